//go:build !linux

package check

import (
	"errors"
	"os"
)

// realProber reports every check as unknown: connwatch runs on Linux only.
func realProber() prober {
	none := func() result { return result{StatusUnknown, "connwatch runs on Linux only"} }
	errLinux := errors.New("connwatch runs on Linux only")
	return prober{
		kernel: none, lockdown: none, btf: none, fentry: none, kprobe: none,
		rawTracepoint: none, probeReadKernel: none, syscallTracepoints: none, perfEventArray: none, ringBuf: none,
		capEff: func() (uint64, error) { return 0, errLinux },
		euid:   os.Geteuid,
		sysctl: func(string) (string, error) { return "", errLinux },
	}
}
