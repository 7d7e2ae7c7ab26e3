//go:build linux

package check

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
)

// requirePrivileged skips the test unless it runs as root, or fails it when
// CONNWATCH_REQUIRE_PRIVILEGED is set (CI, the VM harness).
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CONNWATCH_REQUIRE_PRIVILEGED") != "" {
		t.Fatalf("CONNWATCH_REQUIRE_PRIVILEGED is set but euid is %d: this test loads BPF programs and needs root", os.Geteuid())
	}
	t.Skipf("loads BPF programs: needs root (euid %d); set CONNWATCH_REQUIRE_PRIVILEGED to fail instead", os.Geteuid())
}

// TestRunOnThisKernel runs the real checks. What it expects follows from
// what the kernel visibly has, so that it passes both on the CI host (no
// kprobes, fentry refused: tracepoint mode) and in the Debian VMs of
// test/vm (kprobes and trampolines built in: fentry mode).
func TestRunOnThisKernel(t *testing.T) {
	requirePrivileged(t)

	// The leak check below must be able to see a program.
	if prog, err := loadTrivial(ebpf.ProgramSpec{Type: ebpf.RawTracepoint}); err != nil {
		t.Fatalf("loading a trivial program: %v", err)
	} else {
		n, err := loadedCheckPrograms()
		prog.Close()
		if err == nil && n == 0 {
			t.Fatal("loadedCheckPrograms does not see a loaded connwatch_chk program")
		}
	}

	r := Run(context.Background(), Options{})
	var text bytes.Buffer
	r.WriteText(&text)
	t.Logf("connwatch check on %s:\n%s", r.Kernel, text.String())

	status := func(name string) Check {
		t.Helper()
		c, found := r.Check(name)
		if !found {
			t.Fatalf("no %s check", name)
		}
		return c
	}
	expect := func(name string, want ...string) {
		t.Helper()
		c := status(name)
		for _, w := range want {
			if c.Status == w {
				return
			}
		}
		t.Errorf("%s: %s (%s), want %v", name, c.Status, c.Detail, want)
	}

	expect(NameKernel, StatusOK)
	expect(NamePrivileges, StatusOK)
	expect(NameRawTracepoint, StatusOK)
	expect(NamePerfEventArray, StatusOK)

	if os.Getenv("CONNWATCH_EXPECT_LOCKDOWN") == "confidentiality" {
		// The VM booted with lockdown=confidentiality: trivial programs
		// still attach, but the verifier withholds kernel reads.
		expect(NameProbeReadKernel, StatusUnsupported)
		if r.CanRun || r.AutoMode != "" {
			t.Errorf("under lockdown=confidentiality: CanRun %v, auto mode %q (%s)", r.CanRun, r.AutoMode, r.AutoReason)
		}
		return
	}
	expect(NameProbeReadKernel, StatusOK)
	// As root nothing about the attach modes should stay undetermined.
	expect(NameFentry, StatusOK, StatusUnsupported)
	expect(NameSyscallTracepoints, StatusOK, StatusUnsupported, StatusMissing)

	if _, err := os.Stat(vmlinuxBTF); err == nil {
		expect(NameBTF, StatusOK)
	}
	if iface := bpf.KprobeInterface(); iface != "" {
		t.Logf("kernel has kprobes (%s): expecting the kprobe check to pass", iface)
		expect(NameKprobe, StatusOK)
	} else {
		expect(NameKprobe, StatusUnsupported)
		if d := status(NameKprobe).Detail; d != "kprobes unavailable: CONFIG_KPROBES unset; no kprobe PMU and no kprobe_events in tracefs" {
			t.Errorf("kprobe detail %q", d)
		}
	}
	if os.Getenv("CONNWATCH_VM") != "" {
		// test/vm boots Debian cloud kernels, built with trampolines.
		t.Logf("in the test VM (%s): expecting fentry", os.Getenv("CONNWATCH_VM_KERNEL"))
		expect(NameFentry, StatusOK)
	}

	want := string(bpf.ModeTracepoint)
	switch {
	case status(NameFentry).Status == StatusOK:
		want = string(bpf.ModeFentry)
	case status(NameKprobe).Status == StatusOK:
		want = string(bpf.ModeKprobe)
	}
	if r.AutoMode != want {
		t.Errorf("auto mode %q (%s), want %q", r.AutoMode, r.AutoReason, want)
	}
	if want != string(bpf.ModeFentry) && len(r.Skipped) == 0 {
		t.Errorf("auto mode %s but no mode skipped", r.AutoMode)
	}
	if !r.CanRun {
		t.Errorf("cannot run: %s", r.Reason)
	}

	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}

	// Nothing the checks loaded may stay loaded. Programs are freed once
	// their last reference goes, which can lag a little behind Close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := loadedCheckPrograms()
		if err != nil {
			t.Logf("cannot list loaded programs: %v", err)
			break
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d programs named connwatch_chk still loaded", n)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func loadedCheckPrograms() (int, error) {
	n := 0
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // freed meanwhile
		}
		info, err := prog.Info()
		prog.Close()
		if err == nil && info.Name == "connwatch_chk" {
			n++
		}
	}
}

// TestLockdownInVM reads the lockdown mode through securityfs, which the test
// VM does not mount: the test mounts it there (and only there). Boot the VM
// with --append lockdown=integrity --env CONNWATCH_EXPECT_LOCKDOWN=integrity
// to check a given mode.
func TestLockdownInVM(t *testing.T) {
	if os.Getenv("CONNWATCH_VM") == "" {
		t.Skip("mounts securityfs: only inside the test VM (CONNWATCH_VM)")
	}
	requirePrivileged(t)
	var st unix.Statfs_t
	if err := unix.Statfs(securityfsDir, &st); err != nil || uint32(st.Type) != securityfsMagic {
		if err := unix.Mount("securityfs", securityfsDir, "securityfs", 0, ""); err != nil {
			t.Fatalf("mounting securityfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(securityfsDir, 0) })
	}
	r := probeLockdown()
	t.Logf("lockdown: %s (%s)", r.status, r.detail)
	want := os.Getenv("CONNWATCH_EXPECT_LOCKDOWN")
	if want == "" {
		want = "none"
	}
	if w := describeLockdown(want); r != w {
		t.Errorf("lockdown %s (%s), want %s (%s)", r.status, r.detail, w.status, w.detail)
	}
}
