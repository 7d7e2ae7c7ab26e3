package enrich

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// passwdRecheck is how often at most a lookup miss makes the passwd file be
// checked for changes.
const passwdRecheck = 30 * time.Second

// passwdDB maps uids to user names from a passwd(5) file. It is loaded on
// first use and reloaded, when its modification time or size changed, on a
// lookup miss at most once per passwdRecheck. A missing or unreadable file
// resolves nothing. Safe for concurrent use.
type passwdDB struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	names   map[uint32]string
	checked time.Time // last time the file was stat'ed
	modTime time.Time
	size    int64
	loaded  bool
}

func newPasswdDB(path string, now func() time.Time) *passwdDB {
	return &passwdDB{path: path, now: now}
}

// lookup returns the user name of uid, or "" when unknown.
func (p *passwdDB) lookup(uid uint32) string {
	if p == nil { // Options.NoOwners
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if name, ok := p.names[uid]; ok {
		return name
	}
	now := p.now()
	if p.loaded && now.Sub(p.checked) < passwdRecheck {
		return ""
	}
	p.reload(now)
	return p.names[uid]
}

// reload re-reads the file if it changed since the last load.
func (p *passwdDB) reload(now time.Time) {
	p.checked = now
	fi, err := os.Stat(p.path)
	if err != nil {
		p.loaded, p.names = true, nil
		return
	}
	if p.loaded && p.names != nil && fi.ModTime().Equal(p.modTime) && fi.Size() == p.size {
		return
	}
	p.loaded = true
	p.modTime, p.size = fi.ModTime(), fi.Size()
	b, err := os.ReadFile(p.path)
	if err != nil {
		p.names = nil
		return
	}
	p.names = parsePasswd(b)
}

// parsePasswd parses passwd(5) lines "name:password:uid:gid:gecos:dir:shell".
// The first entry of a uid wins, as with getpwuid.
func parsePasswd(b []byte) map[uint32]string {
	m := make(map[uint32]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.SplitN(line, []byte{':'}, 4)
		if len(f) < 3 || len(f[0]) == 0 {
			continue
		}
		uid, err := strconv.ParseUint(string(f[2]), 10, 32)
		if err != nil {
			continue
		}
		if _, dup := m[uint32(uid)]; !dup {
			m[uint32(uid)] = string(f[0])
		}
	}
	return m
}
