// Package imatest builds IMA measurement lists for tests, deterministically:
// binary lists in either byte order, ascii lines, every template the kernel
// writes (ima, ima-ng, ima-sig, ima-buf, ima-modsig, or any other given as raw
// fields), violations, and the PCR values such a list extends. It encodes the
// kernel's format on its own, without package ima, so that tests of ima
// compare two independent encodings (and evmctl as a third).
package imatest

import (
	"bufio"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	_ "crypto/sha512" // hashes for crypto.Hash.New
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
)

// Spec describes one entry.
type Spec struct {
	// PCR is the PCR index; 0 means 10.
	PCR int
	// Template is the template name: ima, ima-ng, ima-sig, ima-buf,
	// ima-modsig, or any other name with Fields.
	Template string
	// FileAlg names the file digest's algorithm (sha1, sha256, sha384,
	// sha512); ignored for the ima template (always 20 bytes).
	FileAlg string
	// Digest is the file digest; nil derives one from Name.
	Digest []byte
	// Name is the file name (or the buffer's name for ima-buf).
	Name string
	// Sig is the sig field (ima-sig, ima-modsig).
	Sig []byte
	// Buf is the buf field (ima-buf).
	Buf []byte
	// ModsigDigest (as "alg:" NUL digest, built from ModsigAlg) and
	// Modsig are the last two ima-modsig fields; empty when no appended
	// signature.
	ModsigAlg    string
	ModsigDigest []byte
	Modsig       []byte
	// Fields are the raw fields of a template this package does not know.
	Fields [][]byte
	// Violation writes a zero template hash and a zero file digest, as the
	// kernel does for measurement violations.
	Violation bool
}

func (s Spec) pcr() int {
	if s.PCR == 0 {
		return 10
	}
	return s.PCR
}

func hashByName(alg string) crypto.Hash {
	switch alg {
	case "sha1":
		return crypto.SHA1
	case "sha256":
		return crypto.SHA256
	case "sha384":
		return crypto.SHA384
	case "sha512":
		return crypto.SHA512
	}
	panic("imatest: unknown algorithm " + alg) // a test's mistake, not input
}

func (s Spec) digest() []byte {
	alg := s.FileAlg
	if s.Template == "ima" || alg == "" {
		alg = "sha1"
	}
	h := hashByName(alg)
	if s.Violation {
		return make([]byte, h.Size())
	}
	if s.Digest != nil {
		return s.Digest
	}
	if s.Template == "ima-buf" {
		// The kernel's ima-buf digest is the hash of the buffer.
		w := hashByName(s.fileAlg()).New()
		w.Write(s.Buf)
		return w.Sum(nil)
	}
	w := h.New()
	w.Write([]byte("content of " + s.Name))
	return w.Sum(nil)
}

func (s Spec) fileAlg() string {
	if s.FileAlg == "" {
		return "sha256"
	}
	return s.FileAlg
}

// TemplateData returns the template data as the kernel hashes it, with
// field lengths in order.
func (s Spec) TemplateData(order binary.ByteOrder) []byte {
	if s.Template == "ima" {
		d := make([]byte, 20+256)
		copy(d, s.digest())
		copy(d[20:], s.Name)
		return d
	}
	var fields [][]byte
	dg := append([]byte(s.fileAlg()+":\x00"), s.digest()...)
	name := append([]byte(s.Name), 0)
	switch s.Template {
	case "ima-ng":
		fields = [][]byte{dg, name}
	case "ima-sig":
		fields = [][]byte{dg, name, s.Sig}
	case "ima-buf":
		fields = [][]byte{dg, name, s.Buf}
	case "ima-modsig":
		var md []byte
		if s.ModsigAlg != "" {
			md = append([]byte(s.ModsigAlg+":\x00"), s.ModsigDigest...)
		}
		fields = [][]byte{dg, name, s.Sig, md, s.Modsig}
	default:
		fields = s.Fields
	}
	var out []byte
	for _, f := range fields {
		out = appendU32(order, out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// TemplateHash returns the listed SHA-1: sha1(template data), or zeros for
// a violation.
func (s Spec) TemplateHash(order binary.ByteOrder) []byte {
	if s.Violation {
		return make([]byte, 20)
	}
	h := crypto.SHA1.New()
	h.Write(s.TemplateData(order))
	return h.Sum(nil)
}

// AppendBinary appends the entry as binary_runtime_measurements holds it.
func (s Spec) AppendBinary(dst []byte, order binary.ByteOrder) []byte {
	dst = appendU32(order, dst, uint32(s.pcr()))
	dst = append(dst, s.TemplateHash(order)...)
	dst = appendU32(order, dst, uint32(len(s.Template)))
	dst = append(dst, s.Template...)
	if s.Template == "ima" {
		dst = append(dst, s.digest()[:20]...)
		dst = appendU32(order, dst, uint32(len(s.Name)))
		return append(dst, s.Name...)
	}
	td := s.TemplateData(order)
	dst = appendU32(order, dst, uint32(len(td)))
	return append(dst, td...)
}

// ASCII returns the entry's line in ascii_runtime_measurements (with LF).
// Templates other than the five known ones are not supported.
func (s Spec) ASCII() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %x %s ", s.pcr(), s.TemplateHash(binary.LittleEndian), s.Template)
	switch s.Template {
	case "ima":
		fmt.Fprintf(&b, "%x %s", s.digest()[:20], s.Name)
	case "ima-ng":
		fmt.Fprintf(&b, "%s:%x %s", s.fileAlg(), s.digest(), s.Name)
	case "ima-sig":
		fmt.Fprintf(&b, "%s:%x %s %x", s.fileAlg(), s.digest(), s.Name, s.Sig)
	case "ima-buf":
		fmt.Fprintf(&b, "%s:%x %s %x", s.fileAlg(), s.digest(), s.Name, s.Buf)
	case "ima-modsig":
		md := ""
		if s.ModsigAlg != "" {
			md = s.ModsigAlg + ":" + hex.EncodeToString(s.ModsigDigest)
		}
		fmt.Fprintf(&b, "%s:%x %s %x %s %x", s.fileAlg(), s.digest(), s.Name, s.Sig, md, s.Modsig)
	default:
		panic("imatest: no ascii form for template " + s.Template)
	}
	b.WriteByte('\n')
	return b.String()
}

// templates are the templates Mixed cycles through.
var templates = []string{"ima-ng", "ima-sig", "ima-buf", "ima-modsig", "ima", "ima-ng"}

// Mixed returns entry i of a deterministic list that mixes every template,
// file digest algorithm and a violation every 7 entries; entry 0 is the
// boot_aggregate.
func Mixed(i int) Spec {
	algs := []string{"sha256", "sha1", "sha384", "sha512"}
	s := Spec{Template: templates[i%len(templates)], FileAlg: algs[(i/len(templates))%len(algs)],
		Name: fmt.Sprintf("/usr/lib/ccmr/file %d.so", i)}
	if i == 0 {
		s.Name = "boot_aggregate"
		s.Template = "ima-ng"
		s.FileAlg = "sha256"
	}
	if i%7 == 3 {
		s.Violation = true
	}
	h := crypto.SHA256.New()
	fmt.Fprintf(h, "sig %d", i)
	pseudo := h.Sum(nil)
	switch s.Template {
	case "ima-sig":
		if i%2 == 0 {
			s.Sig = append([]byte{3, 2, 4, pseudo[0], pseudo[1], pseudo[2], pseudo[3], 0, 32}, pseudo...)
		}
	case "ima-buf":
		s.Name = "kexec-cmdline"
		s.Buf = []byte(fmt.Sprintf("root=/dev/vda%d ro", i))
		s.Digest = nil
	case "ima-modsig":
		if i%2 == 1 {
			s.Sig = append([]byte{3, 2, 4, 1, 2, 3, 4, 0, 32}, pseudo...)
			s.ModsigAlg = "sha256"
			s.ModsigDigest = pseudo
			s.Modsig = append([]byte{0x30, 0x82, 0, 32}, pseudo...)
		}
	}
	return s
}

// NG returns entry i of a plain ima-ng list with sha256 file digests, the
// common case (and the benchmark's list).
func NG(i int) Spec {
	return Spec{Template: "ima-ng", FileAlg: "sha256", Name: fmt.Sprintf("/usr/lib/x86_64-linux-gnu/lib%07d.so.1", i)}
}

// WriteBinary writes n entries gen(0..n-1) as a binary list and returns the
// bytes written. It streams: memory does not grow with n.
func WriteBinary(w io.Writer, n int, order binary.ByteOrder, gen func(int) Spec) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf []byte
	var total int64
	for i := range n {
		buf = gen(i).AppendBinary(buf[:0], order)
		if _, err := bw.Write(buf); err != nil {
			return total, err
		}
		total += int64(len(buf))
	}
	return total, bw.Flush()
}

// Binary returns the binary list of specs.
func Binary(specs []Spec, order binary.ByteOrder) []byte {
	var out []byte
	for _, s := range specs {
		out = s.AppendBinary(out, order)
	}
	return out
}

// ASCIIList returns the ascii list of specs.
func ASCIIList(specs []Spec) string {
	var b strings.Builder
	for _, s := range specs {
		b.WriteString(s.ASCII())
	}
	return b.String()
}

// PCRs returns the values the specs extend into their PCRs, per bank
// ("sha1", "sha256", "sha384", "sha512"), from zero: the listed SHA-1 in the
// sha1 bank, H(template data) in the others, all-ones for violations.
func PCRs(specs []Spec, order binary.ByteOrder, banks ...string) map[string]map[int][]byte {
	out := map[string]map[int][]byte{}
	for _, b := range banks {
		h := hashByName(b)
		m := map[int][]byte{}
		for _, s := range specs {
			v, ok := m[s.pcr()]
			if !ok {
				v = make([]byte, h.Size())
			}
			var d []byte
			switch {
			case s.Violation:
				d = make([]byte, h.Size())
				for i := range d {
					d[i] = 0xff
				}
			case b == "sha1":
				d = s.TemplateHash(order)
			default:
				w := h.New()
				w.Write(s.TemplateData(order))
				d = w.Sum(nil)
			}
			w := h.New()
			w.Write(v)
			w.Write(d)
			m[s.pcr()] = w.Sum(nil)
		}
		out[b] = m
	}
	return out
}

// PCRFile formats PCR values as evmctl's --pcrs file wants them: one
// "PCR-NN: hex" line per PCR 0..23 (missing PCRs are zero of size).
func PCRFile(pcrs map[int][]byte, size int) string {
	var b strings.Builder
	for i := range 24 {
		v, ok := pcrs[i]
		if !ok {
			v = make([]byte, size)
		}
		fmt.Fprintf(&b, "PCR-%02d: %x\n", i, v)
	}
	return b.String()
}

func appendU32(order binary.ByteOrder, dst []byte, v uint32) []byte {
	var b [4]byte
	order.PutUint32(b[:], v)
	return append(dst, b[:]...)
}

// RSASigner makes ima-sig entries signed (digsig v2, PKCS#1 v1.5 over the
// sha256 file digest) with an RSA key, as evmctl ima_sign writes them.
// Signing is slow, so entry i measures file i%Distinct: a list of any length
// costs Distinct signatures to build, and each entry's signature is still
// verified on its own.
type RSASigner struct {
	Key   *rsa.PrivateKey
	KeyID uint32 // evmctl's key ID: the last 4 bytes of sha1(RSAPublicKey DER)
	sigs  [][]byte
	dgsts [][]byte
}

// NewRSASigner signs distinct file digests with key.
func NewRSASigner(key *rsa.PrivateKey, distinct int) (*RSASigner, error) {
	id := sha1.Sum(x509.MarshalPKCS1PublicKey(&key.PublicKey))
	s := &RSASigner{Key: key, KeyID: binary.BigEndian.Uint32(id[16:])}
	for i := range distinct {
		d := sha256.Sum256([]byte(fmt.Sprintf("content of signed file %d", i)))
		sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:])
		if err != nil {
			return nil, err
		}
		hdr := []byte{3, 2, 4, 0, 0, 0, 0, 0, 0} // digsig v2, sha256 (hash_algo 4)
		binary.BigEndian.PutUint32(hdr[3:], s.KeyID)
		binary.BigEndian.PutUint16(hdr[7:], uint16(len(sig)))
		s.sigs = append(s.sigs, append(hdr, sig...))
		s.dgsts = append(s.dgsts, d[:])
	}
	return s, nil
}

// Sig returns entry i: an ima-sig entry whose signature verifies with the
// signer's key (entry 0 is the unsigned boot_aggregate).
func (s *RSASigner) Sig(i int) Spec {
	if i == 0 {
		return Spec{Template: "ima-sig", FileAlg: "sha256", Name: "boot_aggregate"}
	}
	k := i % len(s.sigs)
	return Spec{Template: "ima-sig", FileAlg: "sha256", Digest: s.dgsts[k], Sig: s.sigs[k],
		Name: fmt.Sprintf("/usr/lib/x86_64-linux-gnu/signed%07d.so.1", i)}
}

// PublicPEM returns the signer's public key as a PEM "PUBLIC KEY" block.
func (s *RSASigner) PublicPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&s.Key.PublicKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
