package importer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/ccmr-dev/ccmr/internal/snpserdetest"
	"github.com/ccmr-dev/ccmr/mr"
)

// snpKinds maps each form of the test encoder to the kind Trustee names.
var snpKinds = map[string]string{
	snpserdetest.Sev11: TrusteeSNPSev11,
	snpserdetest.Sev1:  TrusteeSNPSev1,
	snpserdetest.Sev61: TrusteeSNPSev61,
	snpserdetest.Sev63: TrusteeSNPSev63,
}

// Round trip: every real SNP report of the corpus, written in each serde
// form Trustee's attester has sent (generated here from the corpus by the
// test encoder), imports to its very bytes and to the bundle its split
// parts (--snp-report, --vcek/--vlek) make.
func TestTrusteeSNPRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range snpserdetest.Cases {
		raw, der := c.Load(t)
		files := c.Write(t, dir)
		split := Parts{SNPReport: &File{Name: "r", Data: raw}}
		if c.Type == "VCEK" {
			split.VCEK = &File{Name: "k", Data: der}
		} else {
			split.VLEK = &File{Name: "k", Data: der}
		}
		sb, err := Build(split)
		if err != nil {
			t.Fatalf("%s: split parts: %v", c.Name, err)
		}
		want := bundleJSON(t, sb)
		if len(files) != len(snpKinds) {
			t.Fatalf("%s: %d forms written, want %d", c.Name, len(files), len(snpKinds))
		}
		for _, form := range snpserdetest.Forms {
			js, err := os.ReadFile(files[form])
			if err != nil {
				t.Fatal(err)
			}
			p, kind, err := Trustee(File{Name: filepath.Base(files[form]), Data: js})
			if err != nil {
				t.Errorf("%s %s: %v", c.Name, form, err)
				continue
			}
			if kind != snpKinds[form] {
				t.Errorf("%s: kind %s, want %s", c.Name, kind, snpKinds[form])
			}
			if !bytes.Equal(p.SNPReport.Data, raw) {
				for i := range raw {
					if p.SNPReport.Data[i] != raw[i] {
						t.Errorf("%s %s: rebuilt report differs first at byte %#x", c.Name, form, i)
						break
					}
				}
				continue
			}
			b, err := Build(p)
			if err != nil {
				t.Errorf("%s %s: %v", c.Name, form, err)
				continue
			}
			if !bytes.Equal(bundleJSON(t, b), want) {
				t.Errorf("%s %s: the bundle differs from the split parts' bundle", c.Name, form)
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
	if err := json.Unmarshal(snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev1(p.SNPReport.Data), "", nil), &got); err != nil {
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
	c := snpserdetest.Named(t, "trustee-v3-vlek")
	raw, der := c.Load(t)
	v1 := snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev1(raw), c.Type, der)
	v11 := snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev11(raw), c.Type, der)
	v6 := snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev6(t, raw, true), c.Type, der)
	v2raw, v2der := snpserdetest.Named(t, "trustee-v2-vcek").Load(t)
	v2 := snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev6(t, v2raw, true), "VCEK", v2der)
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
	base, _ := snpserdetest.Named(t, "trustee-v3-vlek").Load(t) // v3 Milan
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
		forms := []snpserdetest.Object{snpserdetest.EncodeSev1(raw), snpserdetest.EncodeSev11(raw)}
		for _, mit := range c.mit {
			forms = append(forms, snpserdetest.EncodeSev6(t, raw, mit))
		}
		for i, form := range forms {
			p, kind, err := Trustee(File{Name: "s.json", Data: snpserdetest.EvidenceJSON(t, form, "", nil)})
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
	p, _, err := Trustee(File{Name: "s.json", Data: snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev6(t, raw, true), "", nil)})
	if err != nil || p.SNPReport.Data[0x38+3] != 0 {
		t.Errorf("sev 6.3, reserved TCB byte: %v", err)
	}
	p, _, err = Trustee(File{Name: "s.json", Data: snpserdetest.EvidenceJSON(t, snpserdetest.EncodeSev1(raw), "", nil)})
	if err != nil || !bytes.Equal(p.SNPReport.Data, raw) {
		t.Errorf("sev 1, reserved TCB byte: %v", err)
	}
}

// The producer-written files of Trustee's own end-to-end test
// (attestation-service/tests/e2e/evidence.json: the 2024 one in the
// sev 1.2-5.x form, the 2025 one, committed by AMD for "the latest snp
// attestation", in the sev 6.1-6.2 form, a Genoa version 3 report), each
// with its VCEK: they import as their forms, the test encoder writes the
// same JSON, byte for byte, from the rebuilt bytes (so the encoder is the
// producer, for these forms: what the encoder-written forms generated from
// the corpus rest on), and the 2024 report is the corpus's test-report.bin.
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
		report := snpserdetest.EncodeSev1(p.SNPReport.Data)
		if c.kind != TrusteeSNPSev1 {
			report = snpserdetest.EncodeSev6(t, p.SNPReport.Data, c.mit)
		}
		// Byte for byte, but for the newline EvidenceJSON ends its
		// output with and these files lack.
		js := bytes.TrimSuffix(snpserdetest.EvidenceJSON(t, report, "VCEK", p.VCEK.Data), []byte("\n"))
		if !bytes.Equal(js, data) {
			i := 0
			for i < len(js) && i < len(data) && js[i] == data[i] {
				i++
			}
			t.Errorf("%s: the test encoder's JSON (%d bytes) differs from the producer's (%d bytes) first at byte %d", c.file, len(js), len(data), i)
		}
		if _, err := Build(p); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
		if c.same != "" {
			// Last, and in its own subtest: without the corpus this one
			// check skips, the producer's files above are still checked.
			t.Run(c.file+"/corpus", func(t *testing.T) {
				if !bytes.Equal(p.SNPReport.Data, corpusFile(t, c.same).Data) {
					t.Errorf("%s: not the report of %s", c.file, c.same)
				}
			})
		}
	}
}
