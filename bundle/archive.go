package bundle

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// FormatV2 is the "format" member of a streamed bundle's manifest: a zip
// archive (docs/bundle.md) whose first member, ManifestName, is the v1
// document with each log's data replaced by the name of the member that
// holds it, and whose other members are the logs, stored as they are.
const FormatV2 = "ccmr-evidence/v2"

// ManifestName is the first member of a v2 bundle.
const ManifestName = "bundle.json"

// MaxArchive bounds a v2 bundle: the archive has no zip64 records, so no
// member or offset may reach 4 GiB.
const MaxArchive = 1<<32 - 1

// maxManifest bounds the manifest, read whole: evidence, collateral and
// certificates, never a log.
const maxManifest = 64 << 20

// maxMembers bounds the central directory a reader parses.
const maxMembers = 1 << 12

// Zip record signatures and sizes (APPNOTE.TXT 4.3).
const (
	sigLocal   = 0x04034b50
	sigCentral = 0x02014b50
	sigEnd     = 0x06054b50
	localLen   = 30
	centralLen = 46
	endLen     = 22
	zipVersion = 20 // 2.0: the version a stored member needs
)

// memberName is the archive member of log i.
func memberName(i int) string { return "logs/" + strconv.Itoa(i) }

// Close releases the files the bundle's logs are read from: the archive
// (Open), the temporary copy of standard input (Read), the files a
// collector attached (OnClose). A bundle built in memory has nothing to
// release. Its attached logs cannot be read after it.
func (b *Bundle) Close() error {
	var first error
	for i := len(b.closers) - 1; i >= 0; i-- {
		if err := b.closers[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	b.closers = nil
	return first
}

// OnClose makes Close close c too: a file that a log attached with
// Log.Attach reads from.
func (b *Bundle) OnClose(c io.Closer) { b.closers = append(b.closers, c) }

// Open reads the bundle in the file at path, v1 or v2 by its content. A v2
// bundle's logs stay in the file and are read from it on demand: Close the
// bundle when done with it. The verifier reads a log more than once, so
// the file must not be writable by whoever's evidence is judged while it
// is used (a bundle received over the network is spooled to a private
// file first, as Read does); each member's CRC-32 is checked once, here.
func Open(ctx context.Context, path string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		// Not a file to read at random (a pipe): read it as a stream.
		defer f.Close()
		return ReadContext(ctx, f, path)
	}
	b, err := ReadAt(ctx, f, fi.Size(), path)
	if err != nil || b.Format != FormatV2 {
		f.Close()
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b.OnClose(f)
	return b, nil
}

// ReadContext is Read honouring ctx while a v2 bundle is copied from r to
// a temporary file (r may be standard input, which has no random access).
func ReadContext(ctx context.Context, r io.Reader, name string) (*Bundle, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4)
	if !isArchive(head) {
		return readV1(br, name)
	}
	f, err := os.CreateTemp("", "ccmr-bundle-*.zip")
	if err != nil {
		return nil, fmt.Errorf("%s: spooling the bundle: %w", name, err)
	}
	// The copy is ours alone; removing its name now leaves nothing behind
	// however the process ends (on Unix; elsewhere Close removes it).
	removed := os.Remove(f.Name()) == nil
	tmp := &tempFile{File: f, removed: removed}
	n, err := copyContext(ctx, f, io.LimitReader(br, MaxArchive+1))
	if err == nil && n > MaxArchive {
		err = fmt.Errorf("%w: more than %d bytes", mr.ErrMalformed, int64(MaxArchive))
	}
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := ReadAt(ctx, f, n, name)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	b.OnClose(tmp)
	return b, nil
}

// tempFile is a spooled bundle, removed when closed.
type tempFile struct {
	*os.File
	removed bool
}

func (t *tempFile) Close() error {
	err := t.File.Close()
	if !t.removed {
		os.Remove(t.File.Name())
	}
	return err
}

// isArchive says whether a bundle's first bytes are a zip local header.
func isArchive(head []byte) bool {
	return len(head) == 4 && binary.LittleEndian.Uint32(head) == sigLocal
}

// ReadAt reads the bundle in r (size bytes), v1 or v2 by its content. A
// v2 bundle's logs are attached to their members in r, which must stay
// readable while the bundle is used; every member's CRC-32 is checked
// here, once.
func ReadAt(ctx context.Context, r io.ReaderAt, size int64, name string) (*Bundle, error) {
	var head [4]byte
	if n, _ := r.ReadAt(head[:], 0); !isArchive(head[:n]) {
		return readV1(io.NewSectionReader(r, 0, size), name)
	}
	a := &archive{r: r, size: size, name: name}
	b, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// member is one entry of the central directory, checked against its local
// header.
type member struct {
	name       string
	crc        uint32
	size       int64
	header     int64 // offset of the local header
	data       int64 // offset of the member's bytes
	time, date uint16
}

// archive is a v2 bundle being read.
type archive struct {
	r    io.ReaderAt
	size int64
	name string
}

// malformed is a refusal naming the bundle, the member (when there is
// one) and the byte offset.
func (a *archive) malformed(m string, off int64, format string, args ...any) error {
	where := fmt.Sprintf("byte %d", off)
	if m != "" {
		where = fmt.Sprintf("member %q at byte %d", m, off)
	}
	return fmt.Errorf("%s: %w: %s: %s", a.name, mr.ErrMalformed, where, fmt.Sprintf(format, args...))
}

func (a *archive) readFull(b []byte, off int64, what string) error {
	if off < 0 || off+int64(len(b)) > a.size {
		return a.malformed("", off, "%s runs past the end of the file (%d bytes)", what, a.size)
	}
	if _, err := a.r.ReadAt(b, off); err != nil {
		return fmt.Errorf("%s: reading %s at byte %d: %w", a.name, what, off, err)
	}
	return nil
}

// read parses and checks the archive. Only the one layout the writer
// makes is accepted, so that no two zip readers can see different
// evidence in it: the end record exactly at the end (no comment, no zip64),
// the central directory right before it, the members one after another
// from byte 0 up to the central directory (nothing before, between or
// after them, none overlapping), each stored uncompressed, unencrypted,
// without data descriptor or extra fields, its local header equal to its
// directory entry, named exactly bundle.json, logs/0, logs/1, ... in that
// order, and its CRC-32 right.
func (a *archive) read(ctx context.Context) (*Bundle, error) {
	if a.size > MaxArchive {
		return nil, a.malformed("", 0, "%d bytes, more than a bundle without zip64 holds", a.size)
	}
	if a.size < localLen+endLen {
		return nil, a.malformed("", 0, "%d bytes, too short for a bundle archive", a.size)
	}
	cdOff, cdSize, total, err := a.readEnd()
	if err != nil {
		return nil, err
	}
	members, err := a.readDirectory(cdOff, cdSize, total)
	if err != nil {
		return nil, err
	}
	if err := a.checkLocals(members, cdOff); err != nil {
		return nil, err
	}
	b, err := a.readManifest(members)
	if err != nil {
		return nil, err
	}
	if err := a.attachLogs(ctx, b, members); err != nil {
		return nil, err
	}
	return b, nil
}

// readEnd reads and checks the end of central directory record, which
// must be the last endLen bytes, and returns where the central directory
// lies and how many members it lists.
func (a *archive) readEnd() (cdOff, cdSize int64, total uint16, err error) {
	endOff := a.size - endLen
	var end [endLen]byte
	if err := a.readFull(end[:], endOff, "the end record"); err != nil {
		return 0, 0, 0, err
	}
	le := binary.LittleEndian
	if le.Uint32(end[0:]) != sigEnd {
		return 0, 0, 0, a.malformed("", endOff, "no end of central directory record in the last %d bytes (a comment, zip64 or bytes after the archive)", endLen)
	}
	disk, cdDisk := le.Uint16(end[4:]), le.Uint16(end[6:])
	onDisk, total := le.Uint16(end[8:]), le.Uint16(end[10:])
	cdSize, cdOff = int64(le.Uint32(end[12:])), int64(le.Uint32(end[16:]))
	switch {
	case le.Uint16(end[20:]) != 0:
		return 0, 0, 0, a.malformed("", endOff, "archive comment")
	case disk != 0 || cdDisk != 0 || onDisk != total:
		return 0, 0, 0, a.malformed("", endOff, "multi-disk archive")
	case total == 0xffff || cdSize == 0xffffffff || cdOff == 0xffffffff:
		return 0, 0, 0, a.malformed("", endOff, "zip64 end record")
	case total == 0 || int(total) > maxMembers:
		return 0, 0, 0, a.malformed("", endOff, "%d members, want 1 to %d", total, maxMembers)
	case cdOff+cdSize != endOff:
		return 0, 0, 0, a.malformed("", endOff, "central directory at %d+%d does not end where the end record begins", cdOff, cdSize)
	case cdSize > int64(total)*(centralLen+64):
		return 0, 0, 0, a.malformed("", cdOff, "central directory of %d bytes for %d members", cdSize, total)
	}
	return cdOff, cdSize, total, nil
}

// readDirectory reads the central directory at cdOff (cdSize bytes) and
// checks its total entries, which must fill it exactly.
func (a *archive) readDirectory(cdOff, cdSize int64, total uint16) ([]member, error) {
	cd := make([]byte, cdSize)
	if err := a.readFull(cd, cdOff, "the central directory"); err != nil {
		return nil, err
	}
	members := make([]member, 0, total)
	p := 0
	for i := 0; i < int(total); i++ {
		m, n, err := a.directoryEntry(cd, p, cdOff, i)
		if err != nil {
			return nil, err
		}
		p += n
		members = append(members, m)
	}
	if p != len(cd) {
		return nil, a.malformed("", cdOff+int64(p), "%d bytes after the last central directory entry", len(cd)-p)
	}
	return members, nil
}

// directoryEntry parses and checks the i-th central directory entry, at
// p in cd (the directory read from cdOff), and returns its member and the
// entry's length.
func (a *archive) directoryEntry(cd []byte, p int, cdOff int64, i int) (member, int, error) {
	le := binary.LittleEndian
	off := cdOff + int64(p)
	want := ManifestName
	if i > 0 {
		want = memberName(i - 1)
	}
	if len(cd)-p < centralLen || le.Uint32(cd[p:]) != sigCentral {
		return member{}, 0, a.malformed("", off, "central directory entry %d: no entry signature", i)
	}
	e := cd[p : p+centralLen]
	nameLen, extraLen, commentLen := int(le.Uint16(e[28:])), int(le.Uint16(e[30:])), int(le.Uint16(e[32:]))
	if len(cd)-p-centralLen < nameLen+extraLen+commentLen {
		return member{}, 0, a.malformed("", off, "central directory entry %d runs past the directory", i)
	}
	m := member{
		name:   string(cd[p+centralLen : p+centralLen+nameLen]),
		crc:    le.Uint32(e[16:]),
		size:   int64(le.Uint32(e[24:])),
		header: int64(le.Uint32(e[42:])),
		time:   le.Uint16(e[12:]),
		date:   le.Uint16(e[14:]),
	}
	switch {
	case m.name != want:
		return member{}, 0, a.malformed(m.name, off, "central directory entry %d is named %q, want %q (members are bundle.json, logs/0, logs/1, ... in order)", i, m.name, want)
	case le.Uint16(e[6:]) > zipVersion:
		return member{}, 0, a.malformed(m.name, off, "needs zip version %d (only stored members are used)", le.Uint16(e[6:]))
	case le.Uint16(e[8:]) != 0:
		return member{}, 0, a.malformed(m.name, off, "flags %#04x (encryption, data descriptors and the like are not used)", le.Uint16(e[8:]))
	case le.Uint16(e[10:]) != 0:
		return member{}, 0, a.malformed(m.name, off, "compression method %d, want 0 (stored)", le.Uint16(e[10:]))
	case le.Uint32(e[20:]) != le.Uint32(e[24:]):
		return member{}, 0, a.malformed(m.name, off, "compressed size %d differs from the size %d of a stored member", le.Uint32(e[20:]), m.size)
	case m.size == 0xffffffff || m.header == 0xffffffff:
		return member{}, 0, a.malformed(m.name, off, "zip64 sizes")
	case extraLen != 0 || commentLen != 0:
		return member{}, 0, a.malformed(m.name, off, "extra fields or a comment in the directory entry")
	case le.Uint16(e[34:]) != 0:
		return member{}, 0, a.malformed(m.name, off, "on disk %d", le.Uint16(e[34:]))
	case le.Uint16(e[4:]) != zipVersion || le.Uint16(e[36:]) != 0 || le.Uint32(e[38:]) != 0:
		// Other readers act on these: a Unix mode of a link, a
		// directory bit, a text flag.
		return member{}, 0, a.malformed(m.name, off, "version made by %#04x, internal attributes %#04x, external attributes %#08x: a stored member's are %#04x, 0, 0", le.Uint16(e[4:]), le.Uint16(e[36:]), le.Uint32(e[38:]), zipVersion)
	}
	return m, centralLen + nameLen, nil
}

// checkLocals checks that the members lie one after another from byte 0
// to the central directory at cdOff, each local header matching its
// directory entry, and sets each member's data offset.
func (a *archive) checkLocals(members []member, cdOff int64) error {
	pos := int64(0)
	for i := range members {
		m := &members[i]
		if m.header != pos {
			return a.malformed(m.name, m.header, "local header at %d, want %d (bytes before, between or overlapping members)", m.header, pos)
		}
		if err := a.checkLocal(m); err != nil {
			return err
		}
		pos = m.data + m.size
		if pos > cdOff {
			return a.malformed(m.name, m.data, "%d bytes run into the central directory at %d", m.size, cdOff)
		}
	}
	if pos != cdOff {
		return a.malformed("", pos, "%d bytes between the last member and the central directory", cdOff-pos)
	}
	return nil
}

// checkLocal reads m's local header at m.header, checks it against the
// directory entry and sets m.data.
func (a *archive) checkLocal(m *member) error {
	le := binary.LittleEndian
	pos := m.header
	var h [localLen]byte
	if err := a.readFull(h[:], pos, "a local header"); err != nil {
		return err
	}
	nameLen, extraLen := int64(le.Uint16(h[26:])), int64(le.Uint16(h[28:]))
	switch {
	case le.Uint32(h[0:]) != sigLocal:
		return a.malformed(m.name, pos, "no local header signature")
	case le.Uint16(h[4:]) > zipVersion || le.Uint16(h[6:]) != 0 || le.Uint16(h[8:]) != 0:
		return a.malformed(m.name, pos, "local header version, flags or method differ from a stored member's")
	case le.Uint16(h[10:]) != m.time || le.Uint16(h[12:]) != m.date:
		return a.malformed(m.name, pos, "local header time differs from the directory's")
	case le.Uint32(h[14:]) != m.crc:
		return a.malformed(m.name, pos, "local header CRC-32 %08x, directory %08x", le.Uint32(h[14:]), m.crc)
	case int64(le.Uint32(h[18:])) != m.size || int64(le.Uint32(h[22:])) != m.size:
		return a.malformed(m.name, pos, "local header sizes %d/%d, directory %d", le.Uint32(h[18:]), le.Uint32(h[22:]), m.size)
	case extraLen != 0:
		return a.malformed(m.name, pos, "extra fields in the local header")
	case nameLen != int64(len(m.name)):
		return a.malformed(m.name, pos, "local header name of %d bytes, directory %d", nameLen, len(m.name))
	}
	name := make([]byte, nameLen)
	if err := a.readFull(name, pos+localLen, "a member name"); err != nil {
		return err
	}
	if string(name) != m.name {
		return a.malformed(m.name, pos, "local header names %q", name)
	}
	m.data = pos + localLen + nameLen
	return nil
}

// readManifest reads, checks and decodes the manifest, members[0], and
// checks that it lists one log for each other member.
func (a *archive) readManifest(members []member) (*Bundle, error) {
	man := members[0]
	if man.size > maxManifest {
		return nil, a.malformed(man.name, man.data, "manifest of %d bytes, more than %d", man.size, maxManifest)
	}
	data := make([]byte, man.size)
	if err := a.readFull(data, man.data, "the manifest"); err != nil {
		return nil, err
	}
	if c := crc32.ChecksumIEEE(data); c != man.crc {
		return nil, a.malformed(man.name, man.data, "CRC-32 %08x, want %08x", c, man.crc)
	}
	var b Bundle
	if err := strictjson.DecodeReader(bytes.NewReader(data), maxManifest, &b); err != nil {
		return nil, a.malformed(man.name, man.data, "%v", err)
	}
	if b.Format != FormatV2 {
		return nil, a.malformed(man.name, man.data, "format %q, want %q", b.Format, FormatV2)
	}
	if err := b.checkMembers(); err != nil {
		return nil, a.malformed(man.name, man.data, "%v", err)
	}
	if len(b.Logs) != len(members)-1 {
		return nil, a.malformed(man.name, man.data, "%d logs for %d log members", len(b.Logs), len(members)-1)
	}
	return &b, nil
}

// attachLogs attaches each of b's logs to its member, after checking the
// manifest names it and carries no copy of its data, and the member's
// CRC-32.
func (a *archive) attachLogs(ctx context.Context, b *Bundle, members []member) error {
	man := members[0]
	for i := range b.Logs {
		l, m := &b.Logs[i], members[i+1]
		if l.Member != m.name {
			return a.malformed(man.name, man.data, "logs[%d] names member %q, want %q", i, l.Member, m.name)
		}
		if l.Data != nil {
			// Two copies of a log, one in the manifest and one in its
			// member, would be two logs to two readers.
			return a.malformed(man.name, man.data, "logs[%d] has data in the manifest", i)
		}
		sr := io.NewSectionReader(a.r, m.data, m.size)
		h := crc32.NewIEEE()
		if _, err := copyContext(ctx, h, sr); err != nil {
			return fmt.Errorf("%s: member %q at byte %d: %w", a.name, m.name, m.data, err)
		}
		if c := h.Sum32(); c != m.crc {
			return a.malformed(m.name, m.data, "CRC-32 %08x, want %08x", c, m.crc)
		}
		l.Attach(sr, m.size)
	}
	return nil
}

// copyContext copies r to w in chunks, stopping when ctx ends.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := context.Cause(ctx); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// WriteArchive writes the bundle as a ccmr-evidence/v2 archive: the
// manifest, then each log copied from where it is (Log.Open) in 1 MiB
// chunks, so no log is held in memory. Each log is read twice, once for
// its CRC-32 and once to copy it; a log that changes between the two
// reads is an error, never a member whose CRC does not hold.
func (b *Bundle) WriteArchive(ctx context.Context, w io.Writer) error {
	man := *b
	man.closers = nil
	if man.Format == Format || man.Format == "" {
		man.Format = FormatV2
	}
	man.Logs = make([]Log, len(b.Logs))
	for i, l := range b.Logs {
		if l.Size() >= MaxArchive {
			return fmt.Errorf("logs[%d]: %d bytes, too large for a bundle: %w", i, l.Size(), mr.ErrUnsupported)
		}
		l.Data, l.Member, l.body, l.size = nil, memberName(i), nil, 0
		man.Logs[i] = l
	}
	var mb bytes.Buffer
	enc := json.NewEncoder(&mb)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&man); err != nil {
		return err
	}
	zw := &zipWriter{w: w, time: dosTime(b.Time)}
	if err := zw.member(ctx, ManifestName, int64(mb.Len()), crc32.ChecksumIEEE(mb.Bytes()), func(cw io.Writer) error {
		_, err := cw.Write(mb.Bytes())
		return err
	}); err != nil {
		return err
	}
	for i := range b.Logs {
		l := &b.Logs[i]
		h := crc32.NewIEEE()
		if _, err := copyContext(ctx, h, l.Open(0)); err != nil {
			return fmt.Errorf("logs[%d]: %w", i, err)
		}
		if err := zw.member(ctx, memberName(i), l.Size(), h.Sum32(), func(cw io.Writer) error {
			_, err := copyContext(ctx, cw, io.LimitReader(l.Open(0), l.Size()))
			return err
		}); err != nil {
			return fmt.Errorf("logs[%d]: %w", i, err)
		}
	}
	return zw.close()
}

// zipWriter writes the one archive layout the reader accepts.
type zipWriter struct {
	w       io.Writer
	off     int64
	time    [2]uint16
	central []byte
	n       int
}

// member writes one stored member of size bytes whose CRC-32 is crc; fill
// writes its bytes, which are counted and checked against both.
func (z *zipWriter) member(ctx context.Context, name string, size int64, crc uint32, fill func(io.Writer) error) error {
	le := binary.LittleEndian
	h := make([]byte, localLen, localLen+len(name))
	le.PutUint32(h[0:], sigLocal)
	le.PutUint16(h[4:], zipVersion)
	le.PutUint16(h[10:], z.time[0])
	le.PutUint16(h[12:], z.time[1])
	le.PutUint32(h[14:], crc)
	le.PutUint32(h[18:], uint32(size))
	le.PutUint32(h[22:], uint32(size))
	le.PutUint16(h[26:], uint16(len(name)))
	h = append(h, name...)
	if _, err := z.w.Write(h); err != nil {
		return err
	}
	cw := &countWriter{w: z.w, h: crc32.NewIEEE()}
	if err := fill(cw); err != nil {
		return err
	}
	if cw.n != size || cw.h.Sum32() != crc {
		return fmt.Errorf("member %s changed while it was written (%d bytes, CRC-32 %08x; %d and %08x before)", name, cw.n, cw.h.Sum32(), size, crc)
	}
	c := make([]byte, centralLen, centralLen+len(name))
	le.PutUint32(c[0:], sigCentral)
	le.PutUint16(c[4:], zipVersion)
	le.PutUint16(c[6:], zipVersion)
	copy(c[12:16], h[10:14])
	copy(c[16:28], h[14:26])
	le.PutUint16(c[28:], uint16(len(name)))
	le.PutUint32(c[42:], uint32(z.off))
	z.central = append(z.central, append(c, name...)...)
	z.off += int64(len(h)) + size
	z.n++
	if z.off >= MaxArchive {
		return fmt.Errorf("bundle of more than %d bytes: %w", int64(MaxArchive), mr.ErrUnsupported)
	}
	return nil
}

func (z *zipWriter) close() error {
	le := binary.LittleEndian
	e := make([]byte, endLen)
	le.PutUint32(e[0:], sigEnd)
	le.PutUint16(e[8:], uint16(z.n))
	le.PutUint16(e[10:], uint16(z.n))
	le.PutUint32(e[12:], uint32(len(z.central)))
	le.PutUint32(e[16:], uint32(z.off))
	if z.off+int64(len(z.central)) >= MaxArchive {
		return fmt.Errorf("bundle of more than %d bytes: %w", int64(MaxArchive), mr.ErrUnsupported)
	}
	if _, err := z.w.Write(z.central); err != nil {
		return err
	}
	_, err := z.w.Write(e)
	return err
}

// countWriter counts and hashes what passes through it.
type countWriter struct {
	w io.Writer
	h interface {
		io.Writer
		Sum32() uint32
	}
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// dosTime is t in MS-DOS form (time, date), zero before 1980.
func dosTime(t time.Time) [2]uint16 {
	t = t.UTC()
	if t.Year() < 1980 || t.Year() > 2107 {
		return [2]uint16{0, 0x21} // 1980-01-01
	}
	return [2]uint16{
		uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2),
		uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day()),
	}
}
