// Package snpserdetest writes Trustee `snp` evidence for tests: the JSON
// the confidential-containers attestation agent sends, an SnpEvidence
// {attestation_report, cert_chain} in the serde form of the virtee sev
// crate's AttestationReport, from the 1184 bytes of a real SNP report and
// its endorsement key.
//
// It is written from the Rust source of virtee/sev (AttestationReport and
// its from_bytes, the serde derives) and not from ccmr's decoder
// (bundle/importer), so that tests compare two independent readings of the
// crate. Each form matches the sev versions whose attester wrote it:
// sev1.1 is sev 1.1, sev1 is sev 1.2-5.x (both the #[repr(C)] struct over
// the firmware layout, reserved bytes included), sev6.1 is sev 6.1-6.2 and
// sev6.3 is sev 6.3-7.x (named fields only; 6.3 adds the mitigation
// vectors). The reports and keys are read in place from the public corpus
// through internal/corpus (never copied into the project): a missing corpus
// skips the test with one line, or fails it when CCMR_REQUIRE_CORPUS=1.
package snpserdetest

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// The serde forms, named as bundle/importer names their kinds without the
// "snp/" prefix and as the written files end (NAME.FORM.json).
const (
	// Sev11 is sev 1.1's form: the struct over the bytes, TCB members
	// boot_loader and reserved.
	Sev11 = "sev1.1"
	// Sev1 is sev 1.2-5.x's form: the struct over the bytes, TCB members
	// bootloader and _reserved.
	Sev1 = "sev1"
	// Sev61 is sev 6.1-6.2's form: from_bytes, named fields only.
	Sev61 = "sev6.1"
	// Sev63 is sev 6.3-7.x's form: as Sev61 plus the mitigation vectors.
	Sev63 = "sev6.3"
)

// Forms lists every form, in the order the crate's versions came.
var Forms = []string{Sev11, Sev1, Sev61, Sev63}

// The encoder below writes what the attestation agent sends,
// from the Rust source and not from the decoder under test: sev's
// AttestationReport::from_bytes (the Decoder of sev 7.1, the same
// branches as 6.1-6.3) or, for sev 1.x-5.x, the #[repr(C)] struct read
// over the bytes; then serde's derive (struct: object of its members in
// order; [u8; N], Array<u8, N>, Vec<u8>: array of numbers; bitfield
// newtypes GuestPolicy(u64), PlatformInfo(u64), KeyInfo(u32): the number;
// Option: null or the value; CertType: the variant name), and SnpEvidence
// {attestation_report, cert_chain}.

// nums is serde's form of a byte array: numbers, never base64.
func nums(b []byte) []int {
	out := make([]int, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}

// Object is a JSON object whose members keep their order (serde writes
// struct members in declaration order).
type Object []struct {
	k string
	v any
}

// MarshalJSON writes the members in their order.
func (o Object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(m.k)
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func (o *Object) add(k string, v any) {
	*o = append(*o, struct {
		k string
		v any
	}{k, v})
}

// EncodeSev1 is sev 1.2-5.x: the struct is the bytes.
func EncodeSev1(raw []byte) Object { return encodeSev1TCB(raw, "bootloader", "_reserved") }

// EncodeSev11 is sev 1.1, whose SnpTcbVersion names two members otherwise.
func EncodeSev11(raw []byte) Object { return encodeSev1TCB(raw, "boot_loader", "reserved") }

func encodeSev1TCB(raw []byte, bootloader, reserved string) Object {
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(raw[o:]) }
	le64 := func(o int) uint64 { return binary.LittleEndian.Uint64(raw[o:]) }
	tcb := func(o int) Object {
		var t Object
		t.add(bootloader, raw[o])
		t.add("tee", raw[o+1])
		t.add(reserved, nums(raw[o+2:o+6]))
		t.add("snp", raw[o+6])
		t.add("microcode", raw[o+7])
		return t
	}
	var r Object
	r.add("version", le32(0))
	r.add("guest_svn", le32(4))
	r.add("policy", le64(8))
	r.add("family_id", nums(raw[0x10:0x20]))
	r.add("image_id", nums(raw[0x20:0x30]))
	r.add("vmpl", le32(0x30))
	r.add("sig_algo", le32(0x34))
	r.add("current_tcb", tcb(0x38))
	r.add("plat_info", le64(0x40))
	r.add("_author_key_en", le32(0x48))
	r.add("_reserved_0", le32(0x4c))
	r.add("report_data", nums(raw[0x50:0x90]))
	r.add("measurement", nums(raw[0x90:0xc0]))
	r.add("host_data", nums(raw[0xc0:0xe0]))
	r.add("id_key_digest", nums(raw[0xe0:0x110]))
	r.add("author_key_digest", nums(raw[0x110:0x140]))
	r.add("report_id", nums(raw[0x140:0x160]))
	r.add("report_id_ma", nums(raw[0x160:0x180]))
	r.add("reported_tcb", tcb(0x180))
	r.add("_reserved_1", nums(raw[0x188:0x1a0]))
	r.add("chip_id", nums(raw[0x1a0:0x1e0]))
	r.add("committed_tcb", tcb(0x1e0))
	for i, n := range []string{"current_build", "current_minor", "current_major", "_reserved_2", "committed_build", "committed_minor", "committed_major", "_reserved_3"} {
		r.add(n, raw[0x1e8+i])
	}
	r.add("launch_tcb", tcb(0x1f0))
	r.add("_reserved_4", nums(raw[0x1f8:0x2a0]))
	var sig Object
	sig.add("r", nums(raw[0x2a0:0x2e8]))
	sig.add("s", nums(raw[0x2e8:0x330]))
	sig.add("_reserved", nums(raw[0x330:0x4a0]))
	r.add("signature", sig)
	return r
}

// EncodeSev6 is sev 6.1-7.x's from_bytes then serde; mit: the 6.3+
// struct (with the mitigation vectors). It fails where from_bytes does.
func EncodeSev6(t testing.TB, raw []byte, mit bool) Object {
	t.Helper()
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(raw[o:]) }
	le64 := func(o int) uint64 { return binary.LittleEndian.Uint64(raw[o:]) }
	ver := le32(0)
	// ReportVariant::decode: 0|1 unsupported, 2 V2, 3|4 V3, else V5.
	turin := false
	if ver == 2 {
		chip := raw[0x1a0:0x1e0]
		if bytes.Equal(chip, make([]byte, 64)) {
			t.Fatal("sev: MaskedChipId")
		}
		turin = bytes.Equal(chip[8:], make([]byte, 56))
	} else {
		fam, mod := raw[0x188], raw[0x189]
		switch {
		case fam == 0x19 && (mod <= 0xf || (mod >= 0x10 && mod <= 0x1f) || (mod >= 0xa0 && mod <= 0xaf)):
		case fam == 0x1a && mod <= 0x11:
			turin = true
		default:
			t.Fatal("sev: processor is not of known SEV-SNP model")
		}
	}
	tcb := func(o int) Object {
		var t Object
		if turin { // from_turin_bytes
			t.add("fmc", raw[o])
			t.add("bootloader", raw[o+1])
			t.add("tee", raw[o+2])
			t.add("snp", raw[o+3])
		} else { // from_legacy_bytes
			t.add("fmc", nil)
			t.add("bootloader", raw[o])
			t.add("tee", raw[o+1])
			t.add("snp", raw[o+6])
		}
		t.add("microcode", raw[o+7])
		return t
	}
	version := func(o int) Object {
		var v Object
		v.add("major", raw[o+2])
		v.add("minor", raw[o+1])
		v.add("build", raw[o])
		return v
	}
	opt := func(on bool, v any) any {
		if on {
			return v
		}
		return nil
	}
	var r Object
	r.add("version", ver)
	r.add("guest_svn", le32(4))
	r.add("policy", le64(8))
	r.add("family_id", nums(raw[0x10:0x20]))
	r.add("image_id", nums(raw[0x20:0x30]))
	r.add("vmpl", le32(0x30))
	r.add("sig_algo", le32(0x34))
	r.add("current_tcb", tcb(0x38))
	r.add("plat_info", le64(0x40))
	r.add("key_info", le32(0x48))
	r.add("report_data", nums(raw[0x50:0x90]))
	r.add("measurement", nums(raw[0x90:0xc0]))
	r.add("host_data", nums(raw[0xc0:0xe0]))
	r.add("id_key_digest", nums(raw[0xe0:0x110]))
	r.add("author_key_digest", nums(raw[0x110:0x140]))
	r.add("report_id", nums(raw[0x140:0x160]))
	r.add("report_id_ma", nums(raw[0x160:0x180]))
	r.add("reported_tcb", tcb(0x180))
	r.add("cpuid_fam_id", opt(ver > 2, raw[0x188]))
	r.add("cpuid_mod_id", opt(ver > 2, raw[0x189]))
	r.add("cpuid_step", opt(ver > 2, raw[0x18a]))
	r.add("chip_id", nums(raw[0x1a0:0x1e0]))
	r.add("committed_tcb", tcb(0x1e0))
	r.add("current", version(0x1e8))
	r.add("committed", version(0x1ec))
	r.add("launch_tcb", tcb(0x1f0))
	if mit {
		r.add("launch_mit_vector", opt(ver >= 5, le64(0x1f8)))
		r.add("current_mit_vector", opt(ver >= 5, le64(0x200)))
	}
	var sig Object
	sig.add("r", nums(raw[0x2a0:0x2e8]))
	sig.add("s", nums(raw[0x2e8:0x330]))
	r.add("signature", sig)
	return r
}

// Encode is the attestation_report of raw in form (one of Forms); an
// unknown form fails t.
func Encode(t testing.TB, form string, raw []byte) Object {
	t.Helper()
	switch form {
	case Sev11:
		return EncodeSev11(raw)
	case Sev1:
		return EncodeSev1(raw)
	case Sev61:
		return EncodeSev6(t, raw, false)
	case Sev63:
		return EncodeSev6(t, raw, true)
	}
	t.Fatalf("snpserdetest: unknown form %q", form)
	return nil
}

// EvidenceJSON is SnpEvidence with a one-entry cert_chain of typ
// (VCEK or VLEK) holding der, or null when der is nil.
func EvidenceJSON(t testing.TB, report Object, typ string, der []byte) []byte {
	t.Helper()
	var e Object
	e.add("attestation_report", report)
	if der == nil {
		e.add("cert_chain", nil)
	} else {
		var c Object
		c.add("cert_type", typ)
		c.add("data", nums(der))
		e.add("cert_chain", []any{c})
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// Case is one real report of the corpus with its endorsement key.
type Case struct {
	// Name names the written files: Name.FORM.json.
	Name string
	// Report and Key are the files' paths relative to the corpus folder.
	Report, Key string
	// Type is the key's cert_type: VCEK or VLEK.
	Type string
	// HCLOffset is where the report starts inside Report (an Azure HCL
	// report holds it at 0x20); 0 for a bare report.
	HCLOffset int
}

// Cases lists every real SNP report of the corpus whose key it holds.
var Cases = []Case{
	{Name: "trustee-v2-vcek", Report: "trustee/snp/test-report.bin", Key: "trustee/snp/test-vcek.der", Type: "VCEK"},
	{Name: "trustee-v3-vlek", Report: "trustee/snp/test-vlek-report.bin", Key: "trustee/snp/test-vlek.der", Type: "VLEK"},
	{Name: "go-sev-guest-milan", Report: "go-sev-guest/attestation.bin", Key: "go-sev-guest/vcek.testcer", Type: "VCEK"},
	{Name: "azure-hcl-milan", Report: "trustee/az-snp-vtpm/hcl-report.bin", Key: "trustee/az-snp-vtpm/vcek.pem", Type: "VCEK", HCLOffset: 0x20},
}

// Named returns the case called name, failing t when there is none.
func Named(t testing.TB, name string) Case {
	t.Helper()
	for _, c := range Cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("snpserdetest: no case %q", name)
	return Case{}
}

// Load reads the case's report and key from the corpus (a missing corpus
// skips t, or fails it when CCMR_REQUIRE_CORPUS=1) and returns the 1184
// report bytes and the key's DER.
func (c Case) Load(t testing.TB) (raw, der []byte) {
	t.Helper()
	return c.Parse(t, corpus.Read(t, c.Report), corpus.Read(t, c.Key))
}

// Parse returns the 1184 report bytes of the case's report file and the
// DER of its key file (DER, or the first PEM CERTIFICATE block), failing t
// when either is not what the case says.
func (c Case) Parse(t testing.TB, reportFile, keyFile []byte) (raw, der []byte) {
	t.Helper()
	if len(reportFile) < c.HCLOffset+sevabi.ReportSize {
		t.Fatalf("%s: %d bytes, want a %d-byte report at byte %d", c.Report, len(reportFile), sevabi.ReportSize, c.HCLOffset)
	}
	raw = reportFile[c.HCLOffset : c.HCLOffset+sevabi.ReportSize]
	der = keyFile
	if bytes.Contains(keyFile, []byte("-----BEGIN")) {
		der = nil
		for rest := keyFile; der == nil; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				t.Fatalf("%s: no PEM CERTIFICATE block", c.Key)
			}
			if blk.Type == "CERTIFICATE" {
				der = blk.Bytes
			}
		}
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatalf("%s: %v", c.Key, err)
	}
	return raw, der
}

// Write loads the case from the corpus (skipping or failing t as Load
// does) and writes its evidence in every form, with a one-entry
// cert_chain holding the key, to dir/Name.FORM.json. It returns each
// file's path by form.
func (c Case) Write(t testing.TB, dir string) map[string]string {
	t.Helper()
	raw, der := c.Load(t)
	paths := make(map[string]string, len(Forms))
	for _, form := range Forms {
		p := filepath.Join(dir, c.Name+"."+form+".json")
		if err := os.WriteFile(p, EvidenceJSON(t, Encode(t, form, raw), c.Type, der), 0o644); err != nil {
			t.Fatal(err)
		}
		paths[form] = p
	}
	return paths
}
