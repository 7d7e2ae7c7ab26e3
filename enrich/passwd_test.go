package enrich

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPasswd(t *testing.T) {
	db := newPasswdDB("testdata/passwd", time.Now)
	for uid, want := range map[uint32]string{0: "root", 1: "daemon", 101: "nginx", 998: "systemd-network", 1000: "alice", 4242: ""} {
		if got := db.lookup(uid); got != want {
			t.Errorf("lookup(%d) = %q, want %q", uid, got, want)
		}
	}
}

func TestPasswdMissingThenCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	now := time.Unix(1000, 0)
	db := newPasswdDB(path, func() time.Time { return now })
	if got := db.lookup(0); got != "" {
		t.Fatalf("lookup with no file = %q", got)
	}
	if err := os.WriteFile(path, []byte("root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := db.lookup(1001); got != "" {
		t.Fatalf("file re-checked before passwdRecheck: %q", got)
	}
	now = now.Add(passwdRecheck)
	if got := db.lookup(1001); got != "bob" {
		t.Fatalf("lookup after the file appeared = %q, want bob", got)
	}
	if got := db.lookup(0); got != "root" {
		t.Fatalf("lookup(0) = %q", got)
	}
}
