package ima

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
)

// Template names the kernel knows.
const (
	TemplateIMA       = "ima"
	TemplateIMANG     = "ima-ng"
	TemplateIMASig    = "ima-sig"
	TemplateIMABuf    = "ima-buf"
	TemplateIMAModsig = "ima-modsig"
	TemplateIMANGv2   = "ima-ngv2"
	TemplateIMASigv2  = "ima-sigv2"
	TemplateEVMSig    = "evm-sig"
)

// Field IDs of the kernel's template fields (ima_template.c).
const (
	FieldDigest       = "d"        // legacy 20-byte digest
	FieldName         = "n"        // legacy name
	FieldDigestNG     = "d-ng"     // "alg:" NUL digest
	FieldDigestNGv2   = "d-ngv2"   // "type:alg:" NUL digest
	FieldNameNG       = "n-ng"     // NUL-terminated name
	FieldSig          = "sig"      // IMA signature (security.ima value)
	FieldBuf          = "buf"      // measured buffer
	FieldDigestModsig = "d-modsig" // digest of the file without its appended signature
	FieldModsig       = "modsig"   // appended (PKCS#7) signature
)

// templateFields maps a known template to its fields, as ima_template.c
// defines them.
func templateFields(name string) []string {
	switch name {
	case TemplateIMA:
		return fieldsIMA
	case TemplateIMANG:
		return fieldsNG
	case TemplateIMASig:
		return fieldsSig
	case TemplateIMABuf:
		return fieldsBuf
	case TemplateIMAModsig:
		return fieldsModsig
	case TemplateIMANGv2:
		return fieldsNGv2
	case TemplateIMASigv2:
		return fieldsSigv2
	case TemplateEVMSig:
		return fieldsEVMSig
	}
	return nil
}

var (
	fieldsIMA    = []string{FieldDigest, FieldName}
	fieldsNG     = []string{FieldDigestNG, FieldNameNG}
	fieldsSig    = []string{FieldDigestNG, FieldNameNG, FieldSig}
	fieldsBuf    = []string{FieldDigestNG, FieldNameNG, FieldBuf}
	fieldsModsig = []string{FieldDigestNG, FieldNameNG, FieldSig, FieldDigestModsig, FieldModsig}
	fieldsNGv2   = []string{FieldDigestNGv2, FieldNameNG}
	fieldsSigv2  = []string{FieldDigestNGv2, FieldNameNG, FieldSig}
	fieldsEVMSig = []string{FieldDigestNG, FieldNameNG, "evmsig", "xattrnames", "xattrlengths", "xattrvalues", "iuid", "igid", "imode"}
)

// internTemplate returns a shared string for the common template names, so
// the readers do not allocate one per entry.
func internTemplate(b []byte) string {
	for _, n := range [...]string{TemplateIMANG, TemplateIMASig, TemplateIMA, TemplateIMABuf, TemplateIMAModsig, TemplateIMANGv2, TemplateIMASigv2, TemplateEVMSig} {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

// legacyNameSize is the size the legacy ima template pads its name to
// before hashing: IMA_EVENT_NAME_LEN_MAX + 1.
const legacyNameSize = 256

// Field is one field of an entry's template data.
type Field struct {
	// ID is the kernel's field ID (d-ng, n-ng, sig, ...), or "" when the
	// template is unknown and the field was split generically.
	ID string
	// Data is the field's bytes, without its length prefix. It aliases
	// Entry.TemplateData.
	Data []byte
}

// Entry is one measurement of an IMA list.
//
// A Reader reuses the Entry it returns, and the buffers behind its slices,
// on the next call to Next: an Entry is valid until then. To keep one, keep
// e.Clone(), which copies every buffer; a shallow copy (v := *e) is not
// enough.
type Entry struct {
	// Index is the entry's number in the list, from 0.
	Index int
	// Offset is the byte offset of the entry's first byte (binary list) or
	// line (ascii list).
	Offset int64
	// PCR is the PCR the kernel extended (10 unless configured otherwise).
	PCR int
	// TemplateHash is the listed template hash: the SHA-1, 20 bytes, in
	// binary_runtime_measurements; bank Bank's digest of the template
	// data in a per-bank list. All zero for a violation.
	TemplateHash []byte
	// Bank is the bank of TemplateHash: mr.SHA1 for the SHA-1 list (zero
	// is read as mr.SHA1), the list's bank for a per-bank list.
	Bank mr.Alg
	// TemplateName is the template: ima, ima-ng, ima-sig, ima-buf, ...
	TemplateName string
	// TemplateData is the template data exactly as the kernel hashed it:
	// for every template but the legacy ima one, the fields each with its
	// u32 length (in the list's byte order); for the legacy ima template,
	// the 20-byte digest followed by the name padded with zeros to 256
	// bytes. It is nil when the data cannot be rebuilt (an unknown template
	// read from an ascii list).
	TemplateData []byte
	// Fields are the template data's fields, for known templates and for
	// unknown templates whose data splits into length-prefixed fields;
	// empty otherwise.
	Fields []Field
	// BigEndian is set when the entry's integers were big-endian (a
	// big-endian kernel without ima_canonical_fmt).
	BigEndian bool
}

// Clone returns a deep copy of e that stays valid after the Reader moves on.
func (e *Entry) Clone() *Entry {
	c := *e
	c.TemplateHash = append([]byte(nil), e.TemplateHash...)
	if e.TemplateData != nil {
		c.TemplateData = append([]byte(nil), e.TemplateData...)
	}
	c.Fields = make([]Field, len(e.Fields))
	for i, f := range e.Fields {
		c.Fields[i].ID = f.ID
		if f.Data != nil {
			c.Fields[i].Data = append([]byte(nil), f.Data...)
		}
	}
	if len(e.Fields) == 0 {
		c.Fields = nil
	}
	return &c
}

// ListBank returns the bank of the listed template hash, e.Bank or mr.SHA1
// when it is zero.
func (e *Entry) ListBank() mr.Alg {
	if e.Bank == 0 {
		return mr.SHA1
	}
	return e.Bank
}

// IsViolation reports whether the listed template hash is all zero: the
// kernel's mark of a measurement violation (ToMToU, open-writers), whose
// PCR extend uses all-ones instead.
func (e *Entry) IsViolation() bool {
	for _, b := range e.TemplateHash {
		if b != 0 {
			return false
		}
	}
	return true
}

// Field returns the data of the first field with the given ID.
func (e *Entry) Field(id string) ([]byte, bool) {
	for _, f := range e.Fields {
		if f.ID == id {
			return f.Data, true
		}
	}
	return nil, false
}

// FileDigest returns the measured digest and its algorithm name as the
// kernel writes it (sha1, sha256, sm3, md5, ...). The legacy ima template
// reports "sha1" for its 20-byte digest (it also held MD5 on some old
// kernels, which the list does not say). For d-ngv2 templates, alg is the
// algorithm without the digest type (see FileDigestType).
func (e *Entry) FileDigest() (alg string, digest []byte, ok bool) {
	if d, ok := e.Field(FieldDigest); ok {
		return "sha1", d, true
	}
	for _, id := range [...]string{FieldDigestNG, FieldDigestNGv2} {
		if d, ok := e.Field(id); ok {
			_, a, dg, err := splitDigestField(d)
			if err != nil {
				return "", nil, false
			}
			return a, dg, true
		}
	}
	return "", nil, false
}

// FileDigestType returns the digest type of a d-ngv2 field ("ima" or
// "verity"), or "" for other templates.
func (e *Entry) FileDigestType() string {
	if d, ok := e.Field(FieldDigestNGv2); ok {
		t, _, _, err := splitDigestField(d)
		if err == nil {
			return t
		}
	}
	return ""
}

// FileName returns the measured file's name (or the buffer's name for
// ima-buf), without the terminating NUL.
func (e *Entry) FileName() string {
	if d, ok := e.Field(FieldNameNG); ok {
		return string(bytes.TrimSuffix(d, []byte{0}))
	}
	if d, ok := e.Field(FieldName); ok {
		return string(bytes.TrimRight(d, "\x00"))
	}
	return ""
}

// Signature returns the sig field (the file's security.ima signature, with
// its header), empty when the file had none.
func (e *Entry) Signature() []byte { d, _ := e.Field(FieldSig); return d }

// Buf returns the buf field of ima-buf entries.
func (e *Entry) Buf() []byte { d, _ := e.Field(FieldBuf); return d }

// Modsig returns the appended signature (ima-modsig), empty when none.
func (e *Entry) Modsig() []byte { d, _ := e.Field(FieldModsig); return d }

// ModsigDigest returns the d-modsig field (digest of the file without its
// appended signature): algorithm name and bytes, ok false when absent or
// empty.
func (e *Entry) ModsigDigest() (alg string, digest []byte, ok bool) {
	d, found := e.Field(FieldDigestModsig)
	if !found || len(d) == 0 {
		return "", nil, false
	}
	_, a, dg, err := splitDigestField(d)
	if err != nil {
		return "", nil, false
	}
	return a, dg, true
}

// splitDigestField splits a d-ng / d-ngv2 / d-modsig field: "[type:]alg:" NUL
// digest.
func splitDigestField(d []byte) (typ, alg string, digest []byte, err error) {
	i := bytes.IndexByte(d, 0)
	if i < 1 || d[i-1] != ':' {
		return "", "", nil, errors.New("digest field is not \"alg:\\0digest\"")
	}
	prefix := string(d[:i-1])
	if j := strings.IndexByte(prefix, ':'); j >= 0 {
		typ, prefix = prefix[:j], prefix[j+1:]
	}
	return typ, prefix, d[i+1:], nil
}

// parseFields splits e.TemplateData into e.Fields (reusing its storage).
// Known templates must split exactly; unknown ones are split generically when
// they can be and left without fields otherwise.
func (e *Entry) parseFields(order binary.ByteOrder) error {
	e.Fields = e.Fields[:0]
	if e.TemplateName == TemplateIMA {
		if len(e.TemplateData) != 20+legacyNameSize {
			return fmt.Errorf("%w: ima template data is %d bytes, want %d", errTemplate, len(e.TemplateData), 20+legacyNameSize)
		}
		e.Fields = append(e.Fields, Field{FieldDigest, e.TemplateData[:20]}, Field{FieldName, e.TemplateData[20:]})
		return nil
	}
	ids := templateFields(e.TemplateName)
	d := e.TemplateData
	for i := 0; len(d) > 0; i++ {
		if len(d) < 4 {
			return e.fieldErr(ids, fmt.Errorf("%d stray bytes after field %d", len(d), i))
		}
		n := order.Uint32(d)
		if uint64(n) > uint64(len(d)-4) {
			return e.fieldErr(ids, fmt.Errorf("field %d length %d exceeds the %d bytes left", i, n, len(d)-4))
		}
		id := ""
		if ids != nil {
			if i >= len(ids) {
				return e.fieldErr(ids, fmt.Errorf("more than the template's %d fields", len(ids)))
			}
			id = ids[i]
		}
		e.Fields = append(e.Fields, Field{id, d[4 : 4+n : 4+n]})
		d = d[4+n:]
	}
	if ids != nil && len(e.Fields) != len(ids) {
		return e.fieldErr(ids, fmt.Errorf("%d fields, template has %d", len(e.Fields), len(ids)))
	}
	for _, f := range e.Fields {
		switch f.ID {
		case FieldDigestNG, FieldDigestNGv2:
			if i := bytes.IndexByte(f.Data, 0); i < 1 || f.Data[i-1] != ':' {
				return fmt.Errorf("%w: %s field is not \"alg:\\0digest\"", errTemplate, f.ID)
			}
			// The kernel writes "alg:" in d-ng and "type:alg:" in
			// d-ngv2, never the other: the template name is not hashed,
			// so this keeps ima-ng and ima-ngv2 (ima-sig, ima-sigv2)
			// entries from passing as each other.
			// (Bytes, not splitDigestField's strings: this runs for every
			// entry of a replay and must not allocate.)
			prefix := f.Data[:bytes.IndexByte(f.Data, 0)-1]
			var typ []byte
			if j := bytes.IndexByte(prefix, ':'); j >= 0 {
				typ = prefix[:j]
			}
			if f.ID == FieldDigestNG && len(typ) > 0 {
				return fmt.Errorf("%w: %s field has a digest type %q (a d-ngv2 field?)", errTemplate, f.ID, typ)
			}
			if f.ID == FieldDigestNGv2 && string(typ) != "ima" && string(typ) != "verity" {
				return fmt.Errorf("%w: %s field has digest type %q, want ima or verity", errTemplate, f.ID, typ)
			}
		}
	}
	return nil
}

var errTemplate = errors.New("bad template data")

func (e *Entry) fieldErr(ids []string, err error) error {
	e.Fields = e.Fields[:0]
	if ids == nil {
		return nil // unknown template: opaque data is fine
	}
	return fmt.Errorf("%w: %s: %v", errTemplate, e.TemplateName, err)
}
