package otel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A queue directory keeps every batch in a file of its own until the
// collector has accepted it, so that batches survive a restart or a crash
// of the agent (at least once: a batch sent but not yet removed when the
// agent dies is sent again by the next run).
//
//	DIR/lock                  flock(2)ed by the agent that owns DIR; holds its pid
//	DIR/traces/NNNN….batch    one batch each, sent in name order
//	DIR/logs/NNNN….batch
//	DIR/*/NNNN….batch.corrupt a file that failed its checks, set aside
//
// A batch file is written to a temporary name and renamed into place, so
// a file with a batch name is whole unless the disk lied; its header
// carries the body's length and CRC-32C, checked before it is sent.
//
// File layout (little-endian): magic "CWQ1", u32 records, i64 created
// (Unix ns of the batch's first record), u32 body length, u32 CRC-32C of
// the body, then the body (the encoded export request).

const (
	batchMagic     = "CWQ1"
	batchHeaderLen = 4 + 4 + 8 + 4 + 4
	batchSuffix    = ".batch"
	corruptSuffix  = ".corrupt"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// queueDir is an open, locked queue directory.
type queueDir struct {
	dir    string
	lock   *os.File
	budget *budget // bytes of batch files
	log    *slog.Logger
}

// openQueueDir creates dir if needed and locks it. A directory another
// process holds is refused, naming that process.
func openQueueDir(dir string, diskBytes int64, log *slog.Logger) (*queueDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("export queue directory: %w", err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("export queue directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			owner := strings.TrimSpace(string(b))
			return nil, fmt.Errorf("export queue directory %s is in use by another connwatch (pid %s, holding %s): give each agent a directory of its own", dir, owner, path)
		}
		return nil, fmt.Errorf("locking export queue directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &queueDir{dir: dir, lock: f, budget: &budget{limit: diskBytes}, log: log}, nil
}

// close releases the lock.
func (d *queueDir) close() error {
	if d == nil || d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// store is the part of a queue directory holding one signal's batches.
type store struct {
	dir  string
	qd   *queueDir
	next uint64 // sequence number of the next batch file
}

// signalStore opens the signal's subdirectory and returns its store and
// the batches an earlier run left there, oldest first. Files that fail
// their checks are set aside and reported.
func (d *queueDir) signalStore(signal string) (*store, []*batch, error) {
	dir := filepath.Join(d.dir, signal)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("export queue directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("export queue directory: %w", err)
	}
	s := &store{dir: dir, qd: d}
	type seqFile struct {
		seq  uint64
		name string
	}
	var files []seqFile
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			// A write the previous run did not finish: never acknowledged.
			os.Remove(filepath.Join(dir, name))
		case strings.HasSuffix(name, batchSuffix):
			seq, err := strconv.ParseUint(strings.TrimSuffix(name, batchSuffix), 10, 64)
			if err != nil {
				d.setAside(filepath.Join(dir, name), "not a batch file name")
				continue
			}
			files = append(files, seqFile{seq, name})
		}
	}
	slices.SortFunc(files, func(a, b seqFile) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	var out []*batch
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		b, err := readBatchHeader(path)
		if err != nil {
			d.setAside(path, err.Error())
			continue
		}
		b.seq, b.path = f.seq, path
		d.budget.used.Add(b.fileSize)
		out = append(out, b)
		s.next = f.seq + 1
	}
	return s, out, nil
}

// setAside renames a bad batch file so that it is kept for a person to
// look at but never sent, and says so.
func (d *queueDir) setAside(path, why string) {
	err := os.Rename(path, path+corruptSuffix)
	d.log.Error("export queue: bad batch file set aside", "path", path, "reason", why, "renamed_to", path+corruptSuffix, "rename_err", err)
}

// readBatchHeader checks a batch file's header against its size.
func readBatchHeader(path string) (*batch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var h [batchHeaderLen]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("truncated header (%d bytes)", fi.Size())
	}
	b, n, _, err := parseBatchHeader(h[:])
	if err != nil {
		return nil, err
	}
	if want := int64(batchHeaderLen) + int64(n); fi.Size() != want {
		return nil, fmt.Errorf("file has %d bytes, its header says %d", fi.Size(), want)
	}
	b.fileSize = fi.Size()
	return b, nil
}

func parseBatchHeader(h []byte) (b *batch, bodyLen uint32, crc uint32, err error) {
	if len(h) < batchHeaderLen || string(h[:4]) != batchMagic {
		return nil, 0, 0, errors.New("not a connwatch batch file (bad magic)")
	}
	le := binary.LittleEndian
	b = &batch{records: int(le.Uint32(h[4:])), created: time.Unix(0, int64(le.Uint64(h[8:])))}
	bodyLen, crc = le.Uint32(h[16:]), le.Uint32(h[20:])
	if b.records <= 0 || bodyLen == 0 {
		return nil, 0, 0, fmt.Errorf("header says %d records in %d bytes", b.records, bodyLen)
	}
	return b, bodyLen, crc, nil
}

// write stores b in a new file and sets b.path. It reports false, and
// writes nothing, when the directory's budget has no room for it.
func (s *store) write(b *batch) (bool, error) {
	size := int64(batchHeaderLen + len(b.body))
	if !s.qd.budget.take(size) {
		return false, nil
	}
	var h [batchHeaderLen]byte
	copy(h[:], batchMagic)
	le := binary.LittleEndian
	le.PutUint32(h[4:], uint32(b.records))
	le.PutUint64(h[8:], uint64(b.created.UnixNano()))
	le.PutUint32(h[16:], uint32(len(b.body)))
	le.PutUint32(h[20:], crc32.Checksum(b.body, crcTable))
	seq := s.next
	s.next++
	path := filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, batchSuffix))
	tmp := path + ".tmp"
	err := writeFile(tmp, h[:], b.body)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		s.qd.budget.give(size)
		return false, err
	}
	b.seq, b.path, b.fileSize = seq, path, size
	return true, nil
}

func writeFile(path string, parts ...[]byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// load reads b's body back from its file, checking it.
func (s *store) load(b *batch) error {
	data, err := os.ReadFile(b.path)
	if err != nil {
		return err
	}
	hb, n, crc, err := parseBatchHeader(data)
	if err != nil {
		return err
	}
	body := data[batchHeaderLen:]
	if len(body) != int(n) {
		return fmt.Errorf("body has %d bytes, its header says %d", len(body), n)
	}
	if crc32.Checksum(body, crcTable) != crc {
		return errors.New("body does not match its checksum")
	}
	if hb.records != b.records {
		return fmt.Errorf("header changed: %d records, was %d", hb.records, b.records)
	}
	b.body = body
	return nil
}

// remove deletes b's file once it is delivered or given up on.
func (s *store) remove(b *batch) {
	if b.path == "" {
		return
	}
	if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.qd.log.Warn("export queue: removing a sent batch file", "path", b.path, "err", err)
	}
	s.qd.budget.give(b.fileSize)
	b.path = ""
}
