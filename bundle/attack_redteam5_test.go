package bundle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io/fs"
	"strings"
	"testing"
)

// Forges: a v2 bundle whose logs/1 directory entry says "made by Unix"
// with the external attributes of a symbolic link (mode 0120777): the
// bytes ccmr verifies as the IMA list are, to Go's archive/zip, unzip and
// Python's zipfile, a link to the path they spell, and `unzip` makes that
// link; a directory entry's attributes (an MS-DOS directory bit) or its
// internal attributes (text) change what other tools show too. ccmr read
// none of these fields. Rule: only the layout the writer makes is read
// (archive.read): version made by 2.0 (MS-DOS), internal and external
// attributes zero.
func TestRedteam5_ArchiveMemberAttributes(t *testing.T) {
	le := binary.LittleEndian
	good := archiveBytes(t, sample())
	lay := parseLayout(t, good)
	cases := []struct {
		name string
		edit func(b []byte)
	}{
		{"Unix symbolic link", func(b []byte) {
			le.PutUint16(b[lay.central[2]+4:], 3<<8|zipVersion)
			le.PutUint32(b[lay.central[2]+38:], 0o120777<<16)
		}},
		{"MS-DOS directory", func(b []byte) { le.PutUint32(b[lay.central[2]+38:], 0x10) }},
		{"internal attributes", func(b []byte) { le.PutUint16(b[lay.central[1]+36:], 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := bytes.Clone(good)
			c.edit(raw)
			if c.name == "Unix symbolic link" {
				// The differential: another reader sees a link.
				zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
				if err != nil {
					t.Fatal(err)
				}
				if m := zr.File[2].Mode(); m&fs.ModeSymlink == 0 {
					t.Fatalf("archive/zip sees mode %v, want a symbolic link", m)
				}
			}
			b, err := readBytes(raw)
			if err == nil {
				b.Close()
				t.Fatal("a member with attributes the writer never writes was read")
			}
			if !strings.Contains(err.Error(), "attributes") {
				t.Fatalf("error %q does not name the attributes", err)
			}
		})
	}
}
