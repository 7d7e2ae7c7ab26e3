//go:build linux

package test

// A "container" of the tests' own: a copy of the test binary in new pid,
// mount and (unless it shares the host's) network namespaces, connecting
// when told to and saying how, and a docker-like cgroup to put a process
// in.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nsInode returns the inode number of /proc/<pid>/ns/<name>, which is the
// namespace's inum.
func nsInode(t *testing.T, pid int, name string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, name), &st); err != nil {
		t.Fatalf("stat ns/%s of %d: %v", name, pid, err)
	}
	return uint32(st.Ino)
}

// namespacedChild is a copy of the test binary running childMain in new pid,
// mount and network namespaces, like a container's process.
type namespacedChild struct {
	cmd     *exec.Cmd
	stdin   *os.File
	HostPID int
	Local   int // local port of its connection
	Remote  int // port it connected to
	PidNS   uint32
	MntNS   uint32
	ConnPID int // host pid of the process that connected
	out     *bufio.Scanner
}

// startNamespacedChild starts the child; prepare (if not nil) runs with its
// host pid, e.g. to move it into a cgroup. The child waits for connect.
func startNamespacedChild(t *testing.T, prepare func(pid int)) *namespacedChild {
	t.Helper()
	return startChild(t, syscall.CLONE_NEWPID|syscall.CLONE_NEWNS|syscall.CLONE_NEWNET, "1", prepare)
}

// startHostNetChild starts a child in new pid and mount namespaces that
// shares the host's network, as a container run with --network host
// does; it waits for dial.
func startHostNetChild(t *testing.T, prepare func(pid int)) *namespacedChild {
	t.Helper()
	return startChild(t, syscall.CLONE_NEWPID|syscall.CLONE_NEWNS, childHostNet, prepare)
}

// childHostNet is childEnv's value for a child started by
// startHostNetChild.
const childHostNet = "hostnet"

func startChild(t *testing.T, cloneflags uintptr, mode string, prepare func(pid int)) *namespacedChild {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: cloneflags,
		Pdeathsig:  syscall.SIGKILL,
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = stdinR
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot create pid+mount+net namespaces: %v", err)
	}
	stdinR.Close()
	c := &namespacedChild{cmd: cmd, stdin: stdinW, out: bufio.NewScanner(out), HostPID: cmd.Process.Pid}
	t.Cleanup(func() {
		stdinW.Close()
		cmd.Wait()
	})
	c.PidNS = nsInode(t, c.HostPID, "pid")
	c.MntNS = nsInode(t, c.HostPID, "mnt")
	if prepare != nil {
		prepare(c.HostPID)
	}
	return c
}

// connect has the child connect to a listener of its own on 127.0.0.1
// inside its network namespace; with shortLived, a new process in the same
// namespaces connects and exits at once.
func (c *namespacedChild) connect(t *testing.T, shortLived bool) {
	t.Helper()
	cmd := "go\n"
	if shortLived {
		cmd = "short\n"
	}
	if _, err := c.stdin.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	c.readConnected(t)
}

// dial has a child of startHostNetChild connect to addr, on the host's
// network, and keep the connection open until the child exits.
func (c *namespacedChild) dial(t *testing.T, addr string) {
	t.Helper()
	if _, err := fmt.Fprintf(c.stdin, "dial %s\n", addr); err != nil {
		t.Fatal(err)
	}
	c.readConnected(t)
}

func (c *namespacedChild) readConnected(t *testing.T) {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("namespaced child exited before connecting: %v", c.out.Err())
	}
	var ok string
	if _, err := fmt.Sscan(c.out.Text(), &ok, &c.Local, &c.Remote, &c.ConnPID); err != nil || ok != "connected" {
		t.Fatalf("namespaced child said %q", c.out.Text())
	}
}

// childMain runs inside the new namespaces: it brings lo up, then on each
// line of stdin connects to its own listener ("go") or has a short-lived
// child process do it ("short"), and reports the ports and the connecting
// process's host pid. It exits when stdin closes. A child on the host's
// network (childHostNet) runs hostNetChild instead.
func childMain() int {
	switch os.Getenv(childEnv) {
	case "short":
		return shortConnect(os.Args[len(os.Args)-1])
	case childHostNet:
		return hostNetChild()
	case childNAT:
		return natChild()
	}
	ln, ok := loListener("child")
	if !ok {
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	r := bufio.NewReader(os.Stdin)
	var conns []net.Conn
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		switch strings.TrimSpace(line) {
		case "go":
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				fmt.Fprintln(os.Stderr, "child: dial:", err)
				return 1
			}
			conns = append(conns, c)
			reportConn(c)
		case "short":
			self, _ := os.Executable()
			cmd := exec.Command(self, "-test.run=^$", ln.Addr().String())
			cmd.Env = append(os.Environ(), childEnv+"=short")
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				fmt.Fprintln(os.Stderr, "child: short-lived connect:", err)
				return 1
			}
			fmt.Print(string(out))
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// hostNetChild connects to the address of each "dial ADDR" line of stdin,
// reports like childMain, and keeps the connections open until stdin
// closes.
func hostNetChild() int {
	r := bufio.NewReader(os.Stdin)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0
		}
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "exec "); ok {
			// Another program under this pid: it reads the next
			// commands (the test sends none before /proc shows it).
			err := syscall.Exec(path, []string{path, "-test.run=^$"}, os.Environ())
			fmt.Fprintln(os.Stderr, "child: exec:", err)
			return 1
		}
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "dial ")
		if !ok {
			fmt.Fprintf(os.Stderr, "child: unknown command %q\n", line)
			return 1
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: dial:", err)
			return 1
		}
		conns = append(conns, c)
		reportConn(c)
	}
}

// reportConn tells the test about a child's connection: "connected
// <local port> <remote port> <host pid of the connecting process>".
func reportConn(c net.Conn) {
	_, lport, _ := net.SplitHostPort(c.LocalAddr().String())
	_, rport, _ := net.SplitHostPort(c.RemoteAddr().String())
	fmt.Printf("connected %s %s %d\n", lport, rport, hostPID(os.Getpid()))
}

// loListener brings lo up in the child's network namespace and listens on
// 127.0.0.1; who names the child in errors.
func loListener(who string) (net.Listener, bool) {
	if err := loUp(); err != nil {
		fmt.Fprintln(os.Stderr, who+": lo up:", err)
		return nil, false
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, who+": listen:", err)
		return nil, false
	}
	return ln, true
}

// shortConnect connects to addr, reports like childMain and exits.
func shortConnect(addr string) int {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "short: dial:", err)
		return 1
	}
	reportConn(c)
	c.Close()
	return 0
}

// hostPID maps a pid of this pid namespace to the host's, from the NSpid
// line of /proc/self/status (first value: outermost namespace).
func hostPID(pid int) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// loUp sets the loopback interface of the current network namespace up.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func randomContainerID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cgroupRoots finds where a process can be put into a container-like
// cgroup: the cgroup v2 hierarchy (at /sys/fs/cgroup on a pure v2 host,
// /sys/fs/cgroup/unified on a hybrid one) and the v1 name=systemd
// hierarchy. v1 controller hierarchies (memory, ...) are left alone.
func cgroupRoots(t *testing.T) []string {
	t.Helper()
	var roots []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	for _, r := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			roots = append(roots, r)
		}
	}
	if len(roots) == 0 {
		skipOrFail(t, "no cgroup v2 or name=systemd hierarchy to create a container cgroup in")
	}
	return roots
}

// intoContainerCgroup moves pid into system.slice/docker-<id>.scope of every
// hierarchy cgroupRoots finds, and takes it out and removes the cgroups
// when the test ends.
func intoContainerCgroup(t *testing.T, id string, pid int) {
	t.Helper()
	for _, root := range cgroupRoots(t) {
		slice := filepath.Join(root, "system.slice")
		createdSlice := false
		if _, err := os.Stat(slice); errors.Is(err, os.ErrNotExist) {
			createdSlice = true
		}
		dir := filepath.Join(slice, "docker-"+id+".scope")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			skipOrFail(t, "creating cgroup %s: %v", dir, err)
		}
		t.Cleanup(func() {
			// Move whatever is left back to the root so the cgroup
			// can go.
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, p := range strings.Fields(string(b)) {
					os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(p), 0)
				}
			}
			if err := os.Remove(dir); err != nil {
				t.Logf("removing %s: %v", dir, err)
			}
			if createdSlice {
				os.Remove(slice)
			}
		})
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			skipOrFail(t, "moving %d into %s: %v", pid, dir, err)
		}
	}
}
