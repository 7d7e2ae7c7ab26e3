package enrich

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ (sysconf(_SC_CLK_TCK)), the unit of the start time
// in /proc/<pid>/stat. It is 100 on every Linux architecture connwatch runs
// on.
const clockTicks = 100

// maxCmdline bounds how much of /proc/<pid>/cmdline is kept per process so
// that the process cache has a bounded footprint; longer command lines are
// cut at this many bytes.
const maxCmdline = 4096

// Stat is the part of /proc/<pid>/stat enrichment uses.
type Stat struct {
	PID        uint32
	Comm       string
	PPID       uint32
	StartTicks uint64 // field 22: start time in clock ticks after boot
	State      byte   // field 3: R, S, D, Z (zombie), X (dead), ...
}

// Exited reports a process that has exited and not been reaped (or is
// being reaped): its /proc entry still exists, but its cgroup reads "/"
// and its exe cannot be read, which are not facts about where it ran.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ParseStat parses /proc/<pid>/stat. The comm field is delimited by the
// first '(' and the last ')' since it may itself contain spaces and
// parentheses.
func ParseStat(b []byte) (Stat, error) {
	var st Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return st, errors.New("enrich: malformed stat: no (comm)")
	}
	pid, err := strconv.ParseUint(string(bytes.TrimSpace(b[:open])), 10, 32)
	if err != nil {
		return st, fmt.Errorf("enrich: malformed stat pid: %w", err)
	}
	st.PID = uint32(pid)
	st.Comm = string(b[open+1 : closing])
	// Fields after the comm start with field 3 (state); ppid is field 4 and
	// starttime field 22.
	f := bytes.Fields(b[closing+1:])
	if len(f) < 20 {
		return st, fmt.Errorf("enrich: malformed stat: %d fields after comm", len(f))
	}
	if len(f[0]) == 1 {
		st.State = f[0][0]
	}
	ppid, err := strconv.ParseUint(string(f[1]), 10, 32)
	if err != nil {
		return st, fmt.Errorf("enrich: malformed stat ppid: %w", err)
	}
	st.PPID = uint32(ppid)
	st.StartTicks, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return st, fmt.Errorf("enrich: malformed stat starttime: %w", err)
	}
	return st, nil
}

// splitCmdline splits /proc/<pid>/cmdline at NULs; a trailing empty element
// (from the terminating NUL) is dropped.
func splitCmdline(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	b = bytes.TrimSuffix(b, []byte{0})
	s := string(b) // one allocation shared by all arguments
	return strings.Split(s, "\x00")
}

// parseNSLink parses the target of /proc/<pid>/ns/<kind>, "pid:[4026531836]",
// into its inode number.
func parseNSLink(target string) (uint32, bool) {
	i := strings.IndexByte(target, '[')
	if i < 0 || !strings.HasSuffix(target, "]") {
		return 0, false
	}
	n, err := strconv.ParseUint(target[i+1:len(target)-1], 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// readBootTime returns btime from <procRoot>/stat.
func readBootTime(procRoot string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			sec, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("enrich: malformed btime: %w", err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("enrich: no btime in %s", filepath.Join(procRoot, "stat"))
}

// ticksToTime converts a start time in clock ticks after boot to wall clock.
func ticksToTime(boot time.Time, ticks uint64) time.Time {
	if boot.IsZero() {
		return time.Time{}
	}
	sec := ticks / clockTicks
	nsec := (ticks % clockTicks) * (uint64(time.Second) / clockTicks)
	return boot.Add(time.Duration(sec)*time.Second + time.Duration(nsec))
}

// errProcGone reports that /proc/<pid> no longer exists.
var errProcGone = errors.New("enrich: process gone")

// isGone reports whether err means the process no longer exists. ESRCH is
// returned for some files of a process that is being reaped.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// procInfo is everything read about one process.
type procInfo struct {
	stat    Stat
	exe     string
	args    []string
	cg      CgroupInfo
	cgOK    bool
	partial bool // the process exists but some file could not be read
}

// procDir returns <procRoot>/<pid>.
func procDir(procRoot string, pid uint32) string {
	return procRoot + "/" + strconv.FormatUint(uint64(pid), 10)
}

// readStat reads and parses <dir>/stat; errProcGone when the process is
// gone.
func readStat(dir string) (Stat, error) {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		if isGone(err) {
			return Stat{}, errProcGone
		}
		return Stat{}, err
	}
	return ParseStat(b)
}

// readExe returns the target of <dir>/exe without a " (deleted)" suffix.
func readExe(dir string) (string, error) {
	t, err := os.Readlink(dir + "/exe")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(t, " (deleted)"), nil
}

// readProc reads the stat, exe, cmdline and cgroup of one process. It
// returns errProcGone when the stat file does not exist; any other file that
// cannot be read leaves its fields zero and sets partial.
func readProc(procRoot string, pid uint32) (procInfo, error) {
	var pi procInfo
	dir := procDir(procRoot, pid)
	st, err := readStat(dir)
	if err != nil {
		if err == errProcGone {
			return pi, err
		}
		// An unreadable or malformed stat: carry on with the other files.
		pi.partial = true
	} else {
		pi.stat = st
	}

	if pi.exe, err = readExe(dir); err != nil {
		pi.partial = true
	}
	if b, err := readLimited(dir+"/cmdline", maxCmdline); err != nil {
		pi.partial = true
	} else {
		pi.args = splitCmdline(b)
	}
	if b, err := os.ReadFile(dir + "/cgroup"); err != nil {
		pi.partial = true
	} else {
		pi.cg, pi.cgOK = ParseCgroup(b), true
	}
	if pi.stat.Exited() {
		// A zombie has left its cgroups (it reads "/") and its exe link is
		// gone: keep only what stat and cmdline said.
		pi.cg, pi.cgOK, pi.exe = CgroupInfo{}, false, ""
	}
	return pi, nil
}

// readLimited reads at most limit bytes of a file.
func readLimited(name string, limit int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 512)
	n := 0
	for {
		if n == len(buf) {
			if n >= limit {
				return buf[:limit], nil
			}
			nb := make([]byte, min(2*len(buf), limit))
			copy(nb, buf)
			buf = nb
		}
		m, err := f.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readNS returns the pid and mount namespace inode numbers of <dir>.
func readNS(dir string) (pidNS, mntNS uint32, err error) {
	t, err := os.Readlink(dir + "/ns/pid")
	if err != nil {
		return 0, 0, err
	}
	p, ok := parseNSLink(t)
	if !ok {
		return 0, 0, fmt.Errorf("enrich: malformed ns link %q", t)
	}
	t, err = os.Readlink(dir + "/ns/mnt")
	if err != nil {
		return 0, 0, err
	}
	m, ok := parseNSLink(t)
	if !ok {
		return 0, 0, fmt.Errorf("enrich: malformed ns link %q", t)
	}
	return p, m, nil
}
