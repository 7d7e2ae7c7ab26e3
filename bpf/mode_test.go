package bpf

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

func TestSelectMode(t *testing.T) {
	notSupported := fmt.Errorf("kprobes unavailable: %w", ebpf.ErrNotSupported)
	permission := errors.New("operation not permitted")

	tests := []struct {
		name      string
		requested Mode
		fail      map[Mode]error // attach result per mode; missing = success
		want      Mode
		tried     []Mode
		skipped   []Mode
		wantErr   bool
	}{
		{name: "auto prefers fentry", requested: ModeAuto, want: ModeFentry, tried: []Mode{ModeFentry}},
		{
			name: "auto falls back to kprobe without fentry", requested: ModeAuto,
			fail: map[Mode]error{ModeFentry: notSupported},
			want: ModeKprobe, tried: []Mode{ModeFentry, ModeKprobe}, skipped: []Mode{ModeFentry},
		},
		{
			name: "auto falls back to tracepoint on this project's CI kernel", requested: ModeAuto,
			fail: map[Mode]error{ModeFentry: notSupported, ModeKprobe: notSupported},
			want: ModeTracepoint, tried: []Mode{ModeFentry, ModeKprobe, ModeTracepoint}, skipped: []Mode{ModeFentry, ModeKprobe},
		},
		{
			name: "auto does not fall back on other errors", requested: ModeAuto,
			fail:  map[Mode]error{ModeFentry: notSupported, ModeKprobe: permission},
			tried: []Mode{ModeFentry, ModeKprobe}, skipped: []Mode{ModeFentry}, wantErr: true,
		},
		{
			name: "auto fails when nothing is supported", requested: ModeAuto,
			fail:  map[Mode]error{ModeFentry: notSupported, ModeKprobe: notSupported, ModeTracepoint: notSupported},
			tried: []Mode{ModeFentry, ModeKprobe, ModeTracepoint}, skipped: []Mode{ModeFentry, ModeKprobe, ModeTracepoint}, wantErr: true,
		},
		{name: "explicit mode is the only one tried", requested: ModeTracepoint, want: ModeTracepoint, tried: []Mode{ModeTracepoint}},
		{
			name: "explicit mode does not fall back", requested: ModeKprobe,
			fail:  map[Mode]error{ModeKprobe: notSupported},
			tried: []Mode{ModeKprobe}, wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tried []Mode
			got, skipped, err := selectMode(tt.requested, func(m Mode) error {
				tried = append(tried, m)
				return tt.fail[m]
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("mode = %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(tried, tt.tried) {
				t.Errorf("tried %v, want %v", tried, tt.tried)
			}
			var skippedModes []Mode
			for _, s := range skipped {
				skippedModes = append(skippedModes, s.Mode)
				if !errors.Is(s.Err, ebpf.ErrNotSupported) {
					t.Errorf("skipped %s for %v, which is not ErrNotSupported", s.Mode, s.Err)
				}
			}
			if !reflect.DeepEqual(skippedModes, tt.skipped) {
				t.Errorf("skipped %v, want %v", skippedModes, tt.skipped)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "fentry": ModeFentry, "kprobe": ModeKprobe, "tracepoint": ModeTracepoint} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("uprobe"); err == nil {
		t.Error("ParseMode(uprobe) succeeded")
	}
}

// A skipped mode's reason is the plain-words one, whatever wraps it; the
// whole chain stays in Err.
func TestSkippedReason(t *testing.T) {
	inner := &Unsupported{Reason: "this kernel has no kprobes (CONFIG_KPROBES is off)",
		Err: fmt.Errorf("no kprobe PMU: %w", ebpf.ErrNotSupported)}
	s := Skipped{Mode: ModeKprobe, Err: fmt.Errorf("attaching kprobe_tcp_connect: %w", inner)}
	if got := s.Reason(); got != inner.Reason {
		t.Errorf("Reason %q", got)
	}
	if !errors.Is(s.Err, ebpf.ErrNotSupported) || !strings.Contains(s.Err.Error(), "no kprobe PMU") {
		t.Errorf("Err %v lost the chain", s.Err)
	}
	plain := Skipped{Mode: ModeFentry, Err: fmt.Errorf("x: %w", ebpf.ErrNotSupported)}
	if got := plain.Reason(); got != plain.Err.Error() {
		t.Errorf("Reason without Unsupported: %q", got)
	}
}
