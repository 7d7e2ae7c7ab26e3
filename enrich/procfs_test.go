package enrich

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Stat
		wantErr bool
	}{
		{"plain", statLine(812, "curl", 790, 123456), Stat{PID: 812, Comm: "curl", PPID: 790, StartTicks: 123456, State: 'S'}, false},
		{"comm with spaces", statLine(77, "Web Content", 1, 9), Stat{PID: 77, Comm: "Web Content", PPID: 1, StartTicks: 9, State: 'S'}, false},
		{"comm with parens", statLine(6060, "envoy) (main", 6001, 440123), Stat{PID: 6060, Comm: "envoy) (main", PPID: 6001, StartTicks: 440123, State: 'S'}, false},
		{"comm ending in paren", statLine(9, "x) S 1 2 3 (", 2, 1<<40), Stat{PID: 9, Comm: "x) S 1 2 3 (", PPID: 2, StartTicks: 1 << 40, State: 'S'}, false},
		{"kernel thread", statLine(2, "kthreadd", 0, 0), Stat{PID: 2, Comm: "kthreadd", PPID: 0, StartTicks: 0, State: 'S'}, false},
		{"empty comm", statLine(3, "", 1, 5), Stat{PID: 3, Comm: "", PPID: 1, StartTicks: 5, State: 'S'}, false},
		{"zombie", strings.Replace(statLine(4, "nc", 1, 7), ") S ", ") Z ", 1), Stat{PID: 4, Comm: "nc", PPID: 1, StartTicks: 7, State: 'Z'}, false},
		{"truncated", "812 (curl) S 790 812 812 0", Stat{}, true},
		{"no comm", "812 curl S 790", Stat{}, true},
		{"bad starttime", strings.Replace(statLine(5, "a", 1, 1234), " 1234 ", " x ", 1), Stat{}, true},
		{"empty", "", Stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseStat(%q) error %v, wantErr %v", tt.line, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseStat(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\x00", []string{""}},
		{"curl\x00-sS\x00https://example.com/\x00", []string{"curl", "-sS", "https://example.com/"}},
		{"nginx: worker process", []string{"nginx: worker process"}}, // argv rewritten, no NUL
		{"a\x00\x00b\x00", []string{"a", "", "b"}},
	}
	for _, tt := range tests {
		if got := splitCmdline([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseNSLink(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"pid:[4026531836]", 4026531836, true},
		{"mnt:[4026532600]", 4026532600, true},
		{"pid:[99999999999]", 0, false}, // does not fit the event's uint32
		{"pid:4026531836", 0, false},
		{"pid:[]", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseNSLink(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseNSLink(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBootTimeAndTicks(t *testing.T) {
	boot, err := readBootTime("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(testBoot, 0); !boot.Equal(want) {
		t.Fatalf("boot = %v, want %v", boot, want)
	}
	if got, want := ticksToTime(boot, 220050), time.Unix(testBoot+2200, 500_000_000); !got.Equal(want) {
		t.Errorf("ticksToTime = %v, want %v", got, want)
	}
	if got := ticksToTime(time.Time{}, 5); !got.IsZero() {
		t.Errorf("ticksToTime with unknown boot = %v, want zero", got)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "stat"), []byte("cpu 1 2 3\nctxt 5\n"), 0o644)
	if _, err := readBootTime(dir); err == nil {
		t.Error("readBootTime without btime: no error")
	}
	if _, err := readBootTime(filepath.Join(dir, "nope")); err == nil {
		t.Error("readBootTime of a missing procfs: no error")
	}
}

func TestReadLimited(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 513, maxCmdline - 1, maxCmdline, maxCmdline + 1, 3 * maxCmdline} {
		name := filepath.Join(dir, "f")
		content := strings.Repeat("x", n)
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readLimited(name, maxCmdline)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(n, maxCmdline); len(got) != want {
			t.Errorf("readLimited of %d bytes = %d bytes, want %d", n, len(got), want)
		}
	}
}
