package importer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/ccmr-dev/ccmr/mr"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/trustee-snp/*.json from the corpus")

// The test-only encoder below writes what the attestation agent sends,
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

// ordered is a JSON object whose members keep their order (serde writes
// struct members in declaration order).
type ordered []struct {
	k string
	v any
}

func (o ordered) MarshalJSON() ([]byte, error) {
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

func (o *ordered) add(k string, v any) {
	*o = append(*o, struct {
		k string
		v any
	}{k, v})
}

// encodeSev1 is sev 1.2-5.x: the struct is the bytes.
func encodeSev1(raw []byte) ordered { return encodeSev1TCB(raw, "bootloader", "_reserved") }

// encodeSev11 is sev 1.1, whose SnpTcbVersion names two members otherwise.
func encodeSev11(raw []byte) ordered { return encodeSev1TCB(raw, "boot_loader", "reserved") }

func encodeSev1TCB(raw []byte, bootloader, reserved string) ordered {
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(raw[o:]) }
	le64 := func(o int) uint64 { return binary.LittleEndian.Uint64(raw[o:]) }
	tcb := func(o int) ordered {
		var t ordered
		t.add(bootloader, raw[o])
		t.add("tee", raw[o+1])
		t.add(reserved, nums(raw[o+2:o+6]))
		t.add("snp", raw[o+6])
		t.add("microcode", raw[o+7])
		return t
	}
	var r ordered
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
	var sig ordered
	sig.add("r", nums(raw[0x2a0:0x2e8]))
	sig.add("s", nums(raw[0x2e8:0x330]))
	sig.add("_reserved", nums(raw[0x330:0x4a0]))
	r.add("signature", sig)
	return r
}

// encodeSev6 is sev 6.1-7.x's from_bytes then serde; mit: the 6.3+
// struct (with the mitigation vectors). It fails where from_bytes does.
func encodeSev6(t *testing.T, raw []byte, mit bool) ordered {
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
	tcb := func(o int) ordered {
		var t ordered
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
	version := func(o int) ordered {
		var v ordered
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
	var r ordered
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
	var sig ordered
	sig.add("r", nums(raw[0x2a0:0x2e8]))
	sig.add("s", nums(raw[0x2e8:0x330]))
	r.add("signature", sig)
	return r
}

// snpEvidenceJSON is SnpEvidence with a one-entry cert_chain of typ
// (VCEK or VLEK) holding der, or null when der is nil.
func snpEvidenceJSON(t *testing.T, report ordered, typ string, der []byte) []byte {
	t.Helper()
	var e ordered
	e.add("attestation_report", report)
	if der == nil {
		e.add("cert_chain", nil)
	} else {
		var c ordered
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

// snpCase is one real report of the corpus with its endorsement key.
type snpCase struct {
	name, report, key, typ string
	hclOffset              int // the report inside an Azure HCL report
}

var snpCases = []snpCase{
	{name: "trustee-v2-vcek", report: "trustee/snp/test-report.bin", key: "trustee/snp/test-vcek.der", typ: "VCEK"},
	{name: "trustee-v3-vlek", report: "trustee/snp/test-vlek-report.bin", key: "trustee/snp/test-vlek.der", typ: "VLEK"},
	{name: "go-sev-guest-milan", report: "go-sev-guest/attestation.bin", key: "go-sev-guest/vcek.testcer", typ: "VCEK"},
	{name: "azure-hcl-milan", report: "trustee/az-snp-vtpm/hcl-report.bin", key: "trustee/az-snp-vtpm/vcek.pem", typ: "VCEK", hclOffset: 0x20},
}

func (c snpCase) load(t *testing.T) (raw, der []byte) {
	t.Helper()
	raw = corpusFile(t, c.report).Data
	raw = raw[c.hclOffset : c.hclOffset+sevabi.ReportSize]
	ders, err := ParseCertificates(corpusFile(t, c.key).Data)
	if err != nil || len(ders) == 0 {
		t.Fatalf("%s: %v", c.key, err)
	}
	return raw, ders[0]
}

// Round trip: every real SNP report of the corpus, written in each serde
// form Trustee's attester has sent, imports to its very bytes and to the
// bundle its split parts (--snp-report, --vcek/--vlek) make.
func TestTrusteeSNPRoundTrip(t *testing.T) {
	for _, c := range snpCases {
		raw, der := c.load(t)
		split := Parts{SNPReport: &File{Name: "r", Data: raw}}
		if c.typ == "VCEK" {
			split.VCEK = &File{Name: "k", Data: der}
		} else {
			split.VLEK = &File{Name: "k", Data: der}
		}
		sb, err := Build(split)
		if err != nil {
			t.Fatalf("%s: split parts: %v", c.name, err)
		}
		want := bundleJSON(t, sb)
		for _, form := range []struct {
			kind   string
			report ordered
		}{
			{TrusteeSNPSev11, encodeSev11(raw)},
			{TrusteeSNPSev1, encodeSev1(raw)},
			{TrusteeSNPSev61, encodeSev6(t, raw, false)},
			{TrusteeSNPSev63, encodeSev6(t, raw, true)},
		} {
			js := snpEvidenceJSON(t, form.report, c.typ, der)
			p, kind, err := Trustee(File{Name: c.name + ".json", Data: js})
			if err != nil {
				t.Errorf("%s %s: %v", c.name, form.kind, err)
				continue
			}
			if kind != form.kind {
				t.Errorf("%s: kind %s, want %s", c.name, kind, form.kind)
			}
			if !bytes.Equal(p.SNPReport.Data, raw) {
				for i := range raw {
					if p.SNPReport.Data[i] != raw[i] {
						t.Errorf("%s %s: rebuilt report differs first at byte %#x", c.name, form.kind, i)
						break
					}
				}
				continue
			}
			b, err := Build(p)
			if err != nil {
				t.Errorf("%s %s: %v", c.name, form.kind, err)
				continue
			}
			if !bytes.Equal(bundleJSON(t, b), want) {
				t.Errorf("%s %s: the bundle differs from the split parts' bundle", c.name, form.kind)
			}
			golden := filepath.Join("testdata", "trustee-snp", c.name+"."+strings.TrimPrefix(form.kind, "snp/")+".json")
			if *updateGolden {
				if err := os.WriteFile(golden, js, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if g, err := os.ReadFile(golden); err != nil || !bytes.Equal(g, js) {
				t.Errorf("%s: not what the encoder writes (go test -run SNPRoundTrip -update): %v", golden, err)
			}
		}
	}
}

// The one producer-written sample found (docs/interop.md): an attestation
// agent's sev 1.x-form evidence from an OpenShift node, cert_chain null.
// It decodes to a report go-sev-guest reads with the values the sample
// shows, the test encoder writes the same JSON back (so the encoder's
// sev 1.x form is the producer's), and without a key it is refused naming
// the missing part.
func TestTrusteeSNPProducerSample(t *testing.T) {
	data, err := os.ReadFile("testdata/trustee-snp/aa-evidence-openshift.json")
	if err != nil {
		t.Fatal(err)
	}
	p, kind, err := Trustee(File{Name: "aa.json", Data: data})
	if err != nil || kind != TrusteeSNPSev1 {
		t.Fatalf("%s %v", kind, err)
	}
	if p.VCEK != nil || p.VLEK != nil {
		t.Fatal("a key from a null cert_chain")
	}
	pr, err := sevabi.ReportToProto(p.SNPReport.Data)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Version != 2 || pr.Policy != 0x30000 || hex.EncodeToString(pr.Measurement[:4]) != "6b434162" || string(pr.ReportData[:4]) != "test" ||
		pr.ReportedTcb != 0xd50e000000000003 || pr.CurrentMajor != 1 || pr.CurrentMinor != 55 || pr.CurrentBuild != 8 {
		t.Errorf("report: %v", pr)
	}
	var got, want any
	if err := json.Unmarshal(snpEvidenceJSON(t, encodeSev1(p.SNPReport.Data), "", nil), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Errorf("the test encoder's sev 1.x form differs from the producer's:\n%s\n%s", gb, wb)
	}
	_, err = Build(p)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "--vcek or --vlek") {
		t.Errorf("no key: %v", err)
	}
}

// edit decodes js, lets fn change the attestation_report object (or the
// whole evidence, top) and encodes it again.
func editSNP(t *testing.T, js []byte, fn func(top, r map[string]any)) []byte {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(js, &top); err != nil {
		t.Fatal(err)
	}
	fn(top, top["attestation_report"].(map[string]any))
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Hostile snp evidence is refused, exit 2, naming the member.
func TestTrusteeSNPHostile(t *testing.T) {
	c := snpCases[1] // v3, VLEK
	raw, der := c.load(t)
	v1 := snpEvidenceJSON(t, encodeSev1(raw), c.typ, der)
	v11 := snpEvidenceJSON(t, encodeSev11(raw), c.typ, der)
	v6 := snpEvidenceJSON(t, encodeSev6(t, raw, true), c.typ, der)
	v2raw, v2der := snpCases[0].load(t)
	v2 := snpEvidenceJSON(t, encodeSev6(t, v2raw, true), "VCEK", v2der)
	type edit = func(top, r map[string]any)
	for _, h := range []struct {
		name string
		js   []byte
		fn   edit
		want string
		is   error
	}{
		{"unknown report member", v6, func(_, r map[string]any) { r["extra"] = 1 }, "member attestation_report.extra: ", mr.ErrMalformed},
		{"unknown top member", v6, func(top, _ map[string]any) { top["nonce"] = "x" }, "member nonce: ", mr.ErrMalformed},
		{"sev 1.2 member in a sev 1.1 tcb", v11, func(_, r map[string]any) { r["current_tcb"].(map[string]any)["bootloader"] = 1 }, "member attestation_report.current_tcb.bootloader: ", mr.ErrMalformed},
		{"sev 1.2 tcb member in a sev 1.1 report", v11, func(_, r map[string]any) {
			tcb := r["launch_tcb"].(map[string]any)
			tcb["bootloader"] = tcb["boot_loader"]
			delete(tcb, "boot_loader")
		}, "member attestation_report.launch_tcb.bootloader: ", mr.ErrMalformed},
		{"unknown tcb member", v1, func(_, r map[string]any) { r["launch_tcb"].(map[string]any)["fmc"] = nil }, "member attestation_report.launch_tcb.fmc: ", mr.ErrMalformed},
		{"missing member", v6, func(_, r map[string]any) { delete(r, "host_data") }, "member attestation_report.host_data: malformed input: missing", mr.ErrMalformed},
		{"missing signature.s", v1, func(_, r map[string]any) { delete(r["signature"].(map[string]any), "s") }, "member attestation_report.signature.s: ", mr.ErrMalformed},
		{"missing cert_chain", v6, func(top, _ map[string]any) { delete(top, "cert_chain") }, "member cert_chain: ", mr.ErrMalformed},
		{"short array", v6, func(_, r map[string]any) { r["measurement"] = r["measurement"].([]any)[1:] }, "member attestation_report.measurement: malformed input: 47 numbers", mr.ErrMalformed},
		{"long array", v1, func(_, r map[string]any) { r["_reserved_4"] = append(r["_reserved_4"].([]any), 0) }, "member attestation_report._reserved_4: malformed input: 169 numbers", mr.ErrMalformed},
		{"byte out of range", v6, func(_, r map[string]any) { r["chip_id"].([]any)[3] = 256 }, "member attestation_report.chip_id[3]: ", mr.ErrMalformed},
		{"u8 out of range", v6, func(_, r map[string]any) { r["cpuid_step"] = 300 }, "member attestation_report.cpuid_step: malformed input: 300 does not fit", mr.ErrMalformed},
		{"u32 out of range", v1, func(_, r map[string]any) { r["vmpl"] = 1 << 32 }, "member attestation_report.vmpl: ", mr.ErrMalformed},
		{"negative", v6, func(_, r map[string]any) { r["guest_svn"] = -1 }, "member attestation_report.guest_svn: ", mr.ErrMalformed},
		{"u64 past 2^64", v6, func(_, r map[string]any) { r["policy"] = json.Number("18446744073709551616") }, "member attestation_report.policy: ", mr.ErrMalformed},
		{"fraction", v6, func(_, r map[string]any) { r["vmpl"] = 0.5 }, "member attestation_report.vmpl: ", mr.ErrMalformed},
		{"base64 for an array", v6, func(_, r map[string]any) { r["report_id"] = "AAAA" }, "member attestation_report.report_id: ", mr.ErrMalformed},
		{"null non-Option", v6, func(_, r map[string]any) { r["measurement"] = nil }, "member attestation_report.measurement: malformed input: null", mr.ErrMalformed},
		{"both forms", v6, func(_, r map[string]any) { r["_author_key_en"] = 0 }, "member attestation_report: ", mr.ErrUnsupported},
		{"fmc off Turin", v6, func(_, r map[string]any) { r["reported_tcb"].(map[string]any)["fmc"] = 1 }, "member attestation_report.reported_tcb.fmc: malformed input: set", mr.ErrMalformed},
		{"cpuid None in v3", v6, func(_, r map[string]any) { r["cpuid_fam_id"] = nil }, "member attestation_report.cpuid_fam_id: malformed input: null in a version 3", mr.ErrMalformed},
		{"cpuid in v2", v2, func(_, r map[string]any) { r["cpuid_step"] = 1 }, "member attestation_report.cpuid_step: malformed input: set in a version 2", mr.ErrMalformed},
		{"mit vector in v3", v6, func(_, r map[string]any) { r["launch_mit_vector"] = 7 }, "member attestation_report.launch_mit_vector: malformed input: set in a version 3", mr.ErrMalformed},
		{"v5 without mit vectors", v6, func(_, r map[string]any) {
			r["version"] = 5
			delete(r, "launch_mit_vector")
			delete(r, "current_mit_vector")
		}, "member attestation_report.version: ", mr.ErrUnsupported},
		{"version 1", v6, func(_, r map[string]any) { r["version"] = 1 }, "member attestation_report.version: ", mr.ErrUnsupported},
		{"unknown cpu", v6, func(_, r map[string]any) { r["cpuid_fam_id"] = 0x17 }, "member attestation_report.cpuid_mod_id: ", mr.ErrUnsupported},
		{"masked chip id v2", v2, func(_, r map[string]any) { r["chip_id"] = make([]int, 64) }, "member attestation_report.chip_id: ", mr.ErrUnsupported},
		{"cert type unknown", v6, func(top, _ map[string]any) { top["cert_chain"].([]any)[0].(map[string]any)["cert_type"] = "VCEK2" }, "member cert_chain[0].cert_type: ", mr.ErrMalformed},
		{"cert type OTHER", v6, func(top, _ map[string]any) {
			top["cert_chain"].([]any)[0].(map[string]any)["cert_type"] = map[string]any{"OTHER": "a8074bc2-a25a-483e-aae6-39c045a0b8a1"}
		}, "member cert_chain[0].cert_type: ", mr.ErrUnsupported},
		{"cert not a certificate", v6, func(top, _ map[string]any) { top["cert_chain"].([]any)[0].(map[string]any)["data"] = []int{1, 2} }, "member cert_chain[0].data: ", mr.ErrMalformed},
		{"two keys", v6, func(top, _ map[string]any) {
			top["cert_chain"] = append(top["cert_chain"].([]any), top["cert_chain"].([]any)[0])
		}, "member cert_chain[1].cert_type: ", mr.ErrMalformed},
		{"empty cert_chain", v6, func(top, _ map[string]any) { top["cert_chain"] = []any{} }, "member cert_chain: missing part: 0 entries and no VCEK or VLEK", ErrMissing},
		{"cert_chain of an ASK alone", v6, func(top, _ map[string]any) {
			top["cert_chain"].([]any)[0].(map[string]any)["cert_type"] = "ASK"
		}, "member cert_chain: missing part: 1 entries", ErrMissing},
		{"cert_chain object", v6, func(top, _ map[string]any) { top["cert_chain"] = map[string]any{} }, "member cert_chain: ", mr.ErrMalformed},
		{"report an array", v6, func(top, _ map[string]any) { top["attestation_report"] = []int{} }, "member attestation_report: ", mr.ErrMalformed},
	} {
		wantTrusteeErr(t, h.name, editSNP(t, h.js, h.fn), h.want, h.is)
	}
	// A member twice is refused by the strict decoder.
	dup := bytes.Replace(v6, []byte(`"vmpl":`), []byte(`"vmpl":0,"vmpl":`), 1)
	wantTrusteeErr(t, "duplicate vmpl", dup, "duplicate member", mr.ErrMalformed)
	// A key_info with reserved bits: go-sev-guest's encoder refuses it.
	wantTrusteeErr(t, "key_info reserved bits", editSNP(t, v6, func(_, r map[string]any) { r["key_info"] = 1 << 20 }), "member attestation_report: ", mr.ErrMalformed)
}

// The branches no corpus report takes (a Turin report, whose TCBs carry
// the FMC SPL in byte 0; a version 5 report with mitigation vectors; a
// version 2 report of a Turin-like CHIP_ID) rebuild to the bytes they
// came from, in the forms that can hold them. The signature no longer
// holds (the bytes were edited): only the layout is tested here.
func TestTrusteeSNPSyntheticLayouts(t *testing.T) {
	base, _ := snpCases[1].load(t) // v3 Milan
	turinTCB := func(r []byte, o int) { copy(r[o:o+8], []byte{5, 3, 0, 24, 0, 0, 0, 0xdb}) }
	for _, c := range []struct {
		name string
		edit func(r []byte)
		mit  []bool // the sev 6 forms that can hold it
	}{
		{"v3 turin", func(r []byte) {
			r[0x188], r[0x189], r[0x18a] = 0x1a, 0x02, 0x01
			for _, o := range []int{0x38, 0x180, 0x1e0, 0x1f0} {
				turinTCB(r, o)
			}
		}, []bool{false, true}},
		{"v5 genoa with mitigation vectors", func(r []byte) {
			binary.LittleEndian.PutUint32(r, 5)
			r[0x188], r[0x189] = 0x19, 0x11
			binary.LittleEndian.PutUint64(r[0x1f8:], 0x0102030405060708)
			binary.LittleEndian.PutUint64(r[0x200:], 0xfffffffffffffff1)
		}, []bool{true}},
		{"v2 turin-like chip", func(r []byte) {
			binary.LittleEndian.PutUint32(r, 2)
			copy(r[0x188:0x18b], []byte{0, 0, 0})
			copy(r[0x1a0:0x1e0], append([]byte{1, 2, 3, 4, 5, 6, 7, 8}, make([]byte, 56)...))
			for _, o := range []int{0x38, 0x180, 0x1e0, 0x1f0} {
				turinTCB(r, o)
			}
		}, []bool{false, true}},
	} {
		raw := bytes.Clone(base)
		c.edit(raw)
		forms := []ordered{encodeSev1(raw), encodeSev11(raw)}
		for _, mit := range c.mit {
			forms = append(forms, encodeSev6(t, raw, mit))
		}
		for i, form := range forms {
			p, kind, err := Trustee(File{Name: "s.json", Data: snpEvidenceJSON(t, form, "", nil)})
			if err != nil {
				t.Errorf("%s form %d: %v", c.name, i, err)
				continue
			}
			if !bytes.Equal(p.SNPReport.Data, raw) {
				t.Errorf("%s %s: rebuilt bytes differ", c.name, kind)
			}
		}
	}
	// What the sev 6-7 forms cannot say is lost: a byte the crate's
	// encoder writes as zero (here one of a Milan TCB's reserved bytes)
	// comes back zero, so the signature over the original fails, as it
	// does in Trustee; the sev 1 forms keep it.
	raw := bytes.Clone(base)
	raw[0x38+3] = 0x42
	p, _, err := Trustee(File{Name: "s.json", Data: snpEvidenceJSON(t, encodeSev6(t, raw, true), "", nil)})
	if err != nil || p.SNPReport.Data[0x38+3] != 0 {
		t.Errorf("sev 6.3, reserved TCB byte: %v", err)
	}
	p, _, err = Trustee(File{Name: "s.json", Data: snpEvidenceJSON(t, encodeSev1(raw), "", nil)})
	if err != nil || !bytes.Equal(p.SNPReport.Data, raw) {
		t.Errorf("sev 1, reserved TCB byte: %v", err)
	}
}

// The producer-written files of Trustee's own end-to-end test
// (attestation-service/tests/e2e/evidence.json: the 2024 one in the
// sev 1.2-5.x form, the 2025 one, committed by AMD for "the latest snp
// attestation", in the sev 6.1-6.2 form, a Genoa version 3 report), each
// with its VCEK: they import as their forms, the test encoder writes the
// same JSON from the rebuilt bytes (so the encoder is the producer, for
// these forms), and the 2024 report is the corpus's test-report.bin.
// That their signatures hold on the rebuilt bytes is checked by
// cmd/ccmr's TestForeignTrusteeSNPProducer.
func TestTrusteeSNPTrusteeE2EFiles(t *testing.T) {
	for _, c := range []struct {
		file, kind string
		mit        bool
		same       string
	}{
		{"trustee-e2e-evidence-2024.json", TrusteeSNPSev1, false, "trustee/snp/test-report.bin"},
		{"trustee-e2e-evidence-2025.json", TrusteeSNPSev61, false, ""},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", "trustee-snp", c.file))
		if err != nil {
			t.Fatal(err)
		}
		p, kind, err := Trustee(File{Name: c.file, Data: data})
		if err != nil || kind != c.kind || p.VCEK == nil {
			t.Fatalf("%s: %s %v", c.file, kind, err)
		}
		if c.same != "" && !bytes.Equal(p.SNPReport.Data, corpusFile(t, c.same).Data) {
			t.Errorf("%s: not the report of %s", c.file, c.same)
		}
		report := encodeSev1(p.SNPReport.Data)
		if c.kind != TrusteeSNPSev1 {
			report = encodeSev6(t, p.SNPReport.Data, c.mit)
		}
		var got, want any
		if err := json.Unmarshal(snpEvidenceJSON(t, report, "VCEK", p.VCEK.Data), &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s: the test encoder's JSON differs from the producer's", c.file)
		}
		if _, err := Build(p); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
}
