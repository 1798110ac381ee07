package importer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	sevabi "github.com/google/go-sev-guest/abi"
	sevpb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// Trustee snp evidence kinds: the forms the virtee sev crate's serde
// derive gave AttestationReport over the versions Trustee and the
// attestation agent pinned (docs/interop.md).
const (
	// TrusteeSNPSev11 is the form of sev 1.1: as TrusteeSNPSev1 but for
	// the TCB members, named boot_loader and reserved.
	TrusteeSNPSev11 = "snp/sev1.1"
	// TrusteeSNPSev1 is the form of sev 1.2 to 5.x: the repr(C) struct
	// with its reserved members, every byte of the report.
	TrusteeSNPSev1 = "snp/sev1"
	// TrusteeSNPSev61 is the form of sev 6.1 and 6.2: named fields, no
	// reserved bytes, Option members for the version 3 CPUID bytes.
	TrusteeSNPSev61 = "snp/sev6.1"
	// TrusteeSNPSev63 is the form of sev 6.3 and 7.x: as 6.1, plus the
	// version 5 mitigation vectors.
	TrusteeSNPSev63 = "snp/sev6.3"
)

// serdeKind is what a member of the serde form holds.
type serdeKind int

const (
	serdeU8    serdeKind = iota // a number 0..255
	serdeU32                    // a number 0..2^32-1
	serdeU64                    // a number 0..2^64-1
	serdeBytes                  // an array of exactly n numbers 0..255 ([u8; N], Array<u8, N>)
	serdeObj                    // a struct: exactly the members of sub
)

// serdeField is one member of a serde struct, in declaration order. opt:
// an Option<T>, which serde writes as null or the value.
type serdeField struct {
	name string
	kind serdeKind
	n    int
	opt  bool
	sub  []serdeField
}

func u8f(n string) serdeField           { return serdeField{name: n, kind: serdeU8} }
func u32f(n string) serdeField          { return serdeField{name: n, kind: serdeU32} }
func u64f(n string) serdeField          { return serdeField{name: n, kind: serdeU64} }
func bytesf(n string, l int) serdeField { return serdeField{name: n, kind: serdeBytes, n: l} }
func objf(n string, sub []serdeField) serdeField {
	return serdeField{name: n, kind: serdeObj, sub: sub}
}
func optf(f serdeField) serdeField { f.opt = true; return f }

// sev1TCB is TcbVersion of sev 1.x-5.x: #[repr(C)] over the 8 bytes.
var sev1TCB = []serdeField{u8f("bootloader"), u8f("tee"), bytesf("_reserved", 4), u8f("snp"), u8f("microcode")}

// sev11TCB is SnpTcbVersion of sev 1.1.
var sev11TCB = []serdeField{u8f("boot_loader"), u8f("tee"), bytesf("reserved", 4), u8f("snp"), u8f("microcode")}

// sev11Report is sev1Report with sev 1.1's TCB members.
var sev11Report = func() []serdeField {
	r := slices.Clone(sev1Report)
	for i := range r {
		if strings.HasSuffix(r[i].name, "_tcb") {
			r[i].sub = sev11TCB
		}
	}
	return r
}()

// sev1Report is AttestationReport of sev 1.1-5.x (src/firmware/linux/
// guest/types.rs, then guest/types.rs, later types/snp.rs): a #[repr(C)]
// struct laid out as the firmware's 1184 bytes, reserved members
// included, so that its members in order are the report's bytes.
var sev1Report = []serdeField{
	u32f("version"), u32f("guest_svn"), u64f("policy"), bytesf("family_id", 16), bytesf("image_id", 16),
	u32f("vmpl"), u32f("sig_algo"), objf("current_tcb", sev1TCB), u64f("plat_info"),
	u32f("_author_key_en"), u32f("_reserved_0"), bytesf("report_data", 64), bytesf("measurement", 48),
	bytesf("host_data", 32), bytesf("id_key_digest", 48), bytesf("author_key_digest", 48),
	bytesf("report_id", 32), bytesf("report_id_ma", 32), objf("reported_tcb", sev1TCB),
	bytesf("_reserved_1", 24), bytesf("chip_id", 64), objf("committed_tcb", sev1TCB),
	u8f("current_build"), u8f("current_minor"), u8f("current_major"), u8f("_reserved_2"),
	u8f("committed_build"), u8f("committed_minor"), u8f("committed_major"), u8f("_reserved_3"),
	objf("launch_tcb", sev1TCB), bytesf("_reserved_4", 168),
	objf("signature", []serdeField{bytesf("r", 72), bytesf("s", 72), bytesf("_reserved", 512-144)}),
}

// sev6TCB is TcbVersion of sev 6.x and 7.x: fmc is Some only for a Turin
// report (its TCB layout has the FMC SPL in byte 0).
var sev6TCB = []serdeField{optf(u8f("fmc")), u8f("bootloader"), u8f("tee"), u8f("snp"), u8f("microcode")}

var sev6Version = []serdeField{u8f("major"), u8f("minor"), u8f("build")}

// sev6Report is AttestationReport of sev 6.1 and 6.2; sev63Report adds
// the mitigation vectors of sev 6.3 and 7.x.
var sev6Report = []serdeField{
	u32f("version"), u32f("guest_svn"), u64f("policy"), bytesf("family_id", 16), bytesf("image_id", 16),
	u32f("vmpl"), u32f("sig_algo"), objf("current_tcb", sev6TCB), u64f("plat_info"), u32f("key_info"),
	bytesf("report_data", 64), bytesf("measurement", 48), bytesf("host_data", 32),
	bytesf("id_key_digest", 48), bytesf("author_key_digest", 48), bytesf("report_id", 32),
	bytesf("report_id_ma", 32), objf("reported_tcb", sev6TCB),
	optf(u8f("cpuid_fam_id")), optf(u8f("cpuid_mod_id")), optf(u8f("cpuid_step")),
	bytesf("chip_id", 64), objf("committed_tcb", sev6TCB), objf("current", sev6Version),
	objf("committed", sev6Version), objf("launch_tcb", sev6TCB),
	objf("signature", []serdeField{bytesf("r", 72), bytesf("s", 72)}),
}

var sev63Report = func() []serdeField {
	r := slices.Clone(sev6Report[:len(sev6Report)-1])
	return append(r, optf(u64f("launch_mit_vector")), optf(u64f("current_mit_vector")), sev6Report[len(sev6Report)-1])
}()

// serdeValue is one decoded leaf: nil (an Option's None) or its value.
type serdeValue struct {
	some bool
	u    uint64
	b    []byte
}

// serdeDecoded holds what serdeWalk read: the leaves by dotted path, and
// the bytes of every leaf in declaration order (little-endian numbers),
// which for the sev 1.x form are the report.
type serdeDecoded struct {
	vals map[string]serdeValue
	raw  []byte
}

// serdeWalk decodes raw as a struct of fields: every member present
// once, none unknown, none null unless an Option, numbers in range,
// arrays of their exact length. path names raw in errors.
func serdeWalk(f File, path string, raw json.RawMessage, fields []serdeField, d *serdeDecoded) error {
	var obj map[string]json.RawMessage
	if err := strictjson.Decode(raw, &obj); err != nil || obj == nil {
		return trusteeErr(f, path, "%w: not a JSON object", mr.ErrMalformed)
	}
	for name := range obj {
		if !slices.ContainsFunc(fields, func(s serdeField) bool { return s.name == name }) {
			return trusteeErr(f, path+"."+name, "%w: %w: the sev crate's struct has no such member", mr.ErrMalformed, strictjson.ErrUnknown)
		}
	}
	for _, fd := range fields {
		p := path + "." + fd.name
		v, ok := obj[fd.name]
		if !ok {
			return trusteeErr(f, p, "%w: missing (serde writes every member, null for None)", mr.ErrMalformed)
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			if !fd.opt {
				return trusteeErr(f, p, "%w: null, but the member is not an Option", mr.ErrMalformed)
			}
			d.vals[p] = serdeValue{}
			continue
		}
		switch fd.kind {
		case serdeObj:
			if err := serdeWalk(f, p, v, fd.sub, d); err != nil {
				return err
			}
			continue
		case serdeBytes:
			b, err := serdeByteArray(f, p, v)
			if err != nil {
				return err
			}
			if len(b) != fd.n {
				return trusteeErr(f, p, "%w: %d numbers, the member is [u8; %d]", mr.ErrMalformed, len(b), fd.n)
			}
			d.vals[p] = serdeValue{some: true, b: b}
			d.raw = append(d.raw, b...)
			continue
		}
		var u uint64
		if err := strictjson.Decode(v, &u); err != nil {
			return trusteeErr(f, p, "%w: not an unsigned integer: %w", mr.ErrMalformed, err)
		}
		switch {
		case fd.kind == serdeU8 && u > 0xff:
			return trusteeErr(f, p, "%w: %d does not fit the member's u8", mr.ErrMalformed, u)
		case fd.kind == serdeU32 && u > 0xffffffff:
			return trusteeErr(f, p, "%w: %d does not fit the member's u32", mr.ErrMalformed, u)
		}
		d.vals[p] = serdeValue{some: true, u: u}
		switch fd.kind {
		case serdeU8:
			d.raw = append(d.raw, byte(u))
		case serdeU32:
			d.raw = binary.LittleEndian.AppendUint32(d.raw, uint32(u))
		default:
			d.raw = binary.LittleEndian.AppendUint64(d.raw, u)
		}
	}
	return nil
}

// serdeByteArray decodes a JSON array of numbers 0..255 (serde's form of
// [u8; N] and Vec<u8>). A base64 string, which encoding/json would take
// for a []byte, is refused: serde_json never writes one there.
func serdeByteArray(f File, p string, v json.RawMessage) ([]byte, error) {
	var xs []uint16
	if err := strictjson.Decode(v, &xs); err != nil || xs == nil {
		return nil, trusteeErr(f, p, "%w: not an array of byte values", mr.ErrMalformed)
	}
	b := make([]byte, len(xs))
	for i, x := range xs {
		if x > 0xff {
			return nil, trusteeErr(f, fmt.Sprintf("%s[%d]", p, i), "%w: %d is not a byte value", mr.ErrMalformed, x)
		}
		b[i] = byte(x)
	}
	return b, nil
}

// trusteeSNPEvidence reads Trustee's SnpEvidence (guest-components'
// attester/src/snp, trustee's deps/verifier/src/snp): the sev crate's
// AttestationReport and its Option<Vec<CertTableEntry>>. The report is
// rebuilt to its 1184 ABI bytes exactly as the sev crate of its form
// rebuilds it to check the signature, so what ccmr verifies is what
// Trustee verifies; anything the form cannot say unambiguously is
// refused.
func trusteeSNPEvidence(f File, top map[string]json.RawMessage) (Parts, string, error) {
	for name := range top {
		if name != "attestation_report" && name != "cert_chain" {
			return Parts{}, "", trusteeErr(f, name, "%w: %w: Trustee's snp evidence has attestation_report and cert_chain", mr.ErrMalformed, strictjson.ErrUnknown)
		}
	}
	cc, ok := top["cert_chain"]
	if !ok {
		return Parts{}, "", trusteeErr(f, "cert_chain", "%w: missing (serde writes null for none)", mr.ErrMalformed)
	}
	var members map[string]json.RawMessage
	if err := strictjson.Decode(top["attestation_report"], &members); err != nil || members == nil {
		return Parts{}, "", trusteeErr(f, "attestation_report", "%w: not a JSON object", mr.ErrMalformed)
	}
	has := func(n string) bool { _, ok := members[n]; return ok }
	var (
		kind   string
		fields []serdeField
	)
	switch {
	case has("_author_key_en") && !has("key_info"):
		kind, fields = TrusteeSNPSev1, sev1Report
		var tcb map[string]json.RawMessage
		if json.Unmarshal(members["current_tcb"], &tcb) == nil {
			if _, ok := tcb["boot_loader"]; ok {
				kind, fields = TrusteeSNPSev11, sev11Report
			}
		}
	case has("key_info") && !has("_author_key_en"):
		kind, fields = TrusteeSNPSev61, sev6Report
		if has("launch_mit_vector") || has("current_mit_vector") {
			kind, fields = TrusteeSNPSev63, sev63Report
		}
	default:
		return Parts{}, "", trusteeErr(f, "attestation_report", "%w: neither the sev 1.x-5.x form (_author_key_en) nor the sev 6.x-7.x form (key_info) of AttestationReport", mr.ErrUnsupported)
	}
	d := serdeDecoded{vals: map[string]serdeValue{}}
	if err := serdeWalk(f, "attestation_report", top["attestation_report"], fields, &d); err != nil {
		return Parts{}, "", err
	}
	raw := d.raw
	if kind != TrusteeSNPSev1 && kind != TrusteeSNPSev11 {
		var err error
		if raw, err = sev6ReportBytes(f, kind, d.vals); err != nil {
			return Parts{}, "", err
		}
	}
	if len(raw) != sevabi.ReportSize {
		// The tables above are the ABI layout; a mismatch is ccmr's bug.
		return Parts{}, "", trusteeErr(f, "attestation_report", "%w: rebuilt %d bytes, want %d", mr.ErrMalformed, len(raw), sevabi.ReportSize)
	}
	p := Parts{SNPReport: &File{Name: member(f, "attestation_report"), Data: raw}}
	if err := trusteeCertChain(f, cc, &p); err != nil {
		return Parts{}, "", err
	}
	return p, kind, nil
}

// sev6ReportBytes rebuilds the report of the sev 6.x-7.x form as that
// crate's encoder does (AttestationReport's Encoder in 7.x): the report
// version picks the variant (2; 3 and 4; 5 and later), the processor
// generation picks the TCB layout (Turin: FMC, bootloader, TEE, SNP, 3
// reserved, microcode; earlier: bootloader, TEE, 4 reserved, SNP,
// microcode), reserved bytes are zero. The form drops those bytes, so a
// member the variant does not write (CPUID bytes of a version 2 report,
// mitigation vectors before version 5, an FMC SPL off Turin) would be lost
// if set: it is refused, as is a member the variant needs that is None.
func sev6ReportBytes(f File, kind string, v map[string]serdeValue) ([]byte, error) {
	const r = "attestation_report."
	u := func(p string) uint64 { return v[r+p].u }
	b := func(p string) []byte { return v[r+p].b }
	ver := u("version")
	variant := 5
	switch {
	case ver < 2:
		return nil, trusteeErr(f, r+"version", "%w: report version %d: the sev crate reads reports from version 2 on", mr.ErrUnsupported, ver)
	case ver == 2:
		variant = 2
	case ver <= 4:
		variant = 3
	}
	if variant == 5 && kind == TrusteeSNPSev61 {
		return nil, trusteeErr(f, r+"version", "%w: a version %d report in the sev 6.1-6.2 form, which has no mitigation vectors: the signed bytes 0x1F8-0x207 are lost", mr.ErrUnsupported, ver)
	}
	for _, c := range []string{"cpuid_fam_id", "cpuid_mod_id", "cpuid_step"} {
		if some := v[r+c].some; some != (variant != 2) {
			return nil, trusteeErr(f, r+c, "%w: %s in a version %d report (the CPUID bytes are in reports from version 3 on)", mr.ErrMalformed, someWord(some), ver)
		}
	}
	for _, c := range []string{"launch_mit_vector", "current_mit_vector"} {
		if some := v[r+c].some; kind == TrusteeSNPSev63 && some != (variant == 5) {
			return nil, trusteeErr(f, r+c, "%w: %s in a version %d report (the mitigation vectors are in reports from version 5 on)", mr.ErrMalformed, someWord(some), ver)
		}
	}
	turin := false
	if variant == 2 {
		chip := b("chip_id")
		if bytes.Equal(chip, make([]byte, 64)) {
			return nil, trusteeErr(f, r+"chip_id", "%w: all zero (MASK_CHIP_ID): the sev crate cannot tell a version 2 report's processor generation, hence its TCB layout, without it", mr.ErrUnsupported)
		}
		// sev's rule: a Turin CHIP_ID has its last 56 bytes zero.
		turin = bytes.Equal(chip[8:], make([]byte, 56))
	} else {
		fam, mod := u("cpuid_fam_id"), u("cpuid_mod_id")
		switch {
		case fam == 0x19 && (mod <= 0x1f || (mod >= 0xa0 && mod <= 0xaf)): // Milan, Genoa
		case fam == 0x1a && mod <= 0x11:
			turin = true
		default:
			return nil, trusteeErr(f, r+"cpuid_mod_id", "%w: family %#x model %#x is no SEV-SNP processor the sev crate knows (Milan, Genoa, Turin), so the TCB layout is unknown", mr.ErrUnsupported, fam, mod)
		}
	}
	tcb := func(name string) (uint64, error) {
		p := r + name + "."
		if fmc := v[p+"fmc"]; fmc.some != turin {
			return 0, trusteeErr(f, p+"fmc", "%w: %s, but the report's processor is %s", mr.ErrMalformed, someWord(fmc.some), map[bool]string{true: "Turin (the FMC SPL is byte 0 of its TCB)", false: "not Turin (its TCB has no FMC SPL)"}[turin])
		}
		var t [8]byte
		if turin {
			t = [8]byte{byte(v[p+"fmc"].u), byte(v[p+"bootloader"].u), byte(v[p+"tee"].u), byte(v[p+"snp"].u), 0, 0, 0, byte(v[p+"microcode"].u)}
		} else {
			t = [8]byte{byte(v[p+"bootloader"].u), byte(v[p+"tee"].u), 0, 0, 0, 0, byte(v[p+"snp"].u), byte(v[p+"microcode"].u)}
		}
		return binary.LittleEndian.Uint64(t[:]), nil
	}
	pr := &sevpb.Report{
		Version: uint32(ver), GuestSvn: uint32(u("guest_svn")), Policy: u("policy"),
		FamilyId: b("family_id"), ImageId: b("image_id"), Vmpl: uint32(u("vmpl")), SignatureAlgo: uint32(u("sig_algo")),
		PlatformInfo: u("plat_info"), SignerInfo: uint32(u("key_info")),
		ReportData: b("report_data"), Measurement: b("measurement"), HostData: b("host_data"),
		IdKeyDigest: b("id_key_digest"), AuthorKeyDigest: b("author_key_digest"),
		ReportId: b("report_id"), ReportIdMa: b("report_id_ma"), ChipId: b("chip_id"),
		CurrentMajor: uint32(u("current.major")), CurrentMinor: uint32(u("current.minor")), CurrentBuild: uint32(u("current.build")),
		CommittedMajor: uint32(u("committed.major")), CommittedMinor: uint32(u("committed.minor")), CommittedBuild: uint32(u("committed.build")),
		LaunchMitVector: u("launch_mit_vector"), CurrentMitVector: u("current_mit_vector"),
		Signature: append(append(slices.Clone(b("signature.r")), b("signature.s")...), make([]byte, sevabi.SignatureSize-144)...),
	}
	for _, t := range []struct {
		name string
		dst  *uint64
	}{{"current_tcb", &pr.CurrentTcb}, {"reported_tcb", &pr.ReportedTcb}, {"committed_tcb", &pr.CommittedTcb}, {"launch_tcb", &pr.LaunchTcb}} {
		var err error
		if *t.dst, err = tcb(t.name); err != nil {
			return nil, err
		}
	}
	raw, err := sevabi.ReportToAbiBytes(pr)
	if err != nil {
		return nil, trusteeErr(f, "attestation_report", "%w: %v", mr.ErrMalformed, err)
	}
	if variant != 2 {
		// The CPUID bytes as the report holds them: go-sev-guest keeps
		// them as a CPUID(1).EAX value, which cannot hold every byte.
		raw[0x188], raw[0x189], raw[0x18a] = byte(u("cpuid_fam_id")), byte(u("cpuid_mod_id")), byte(u("cpuid_step"))
	}
	return raw, nil
}

func someWord(some bool) string {
	if some {
		return "set"
	}
	return "null"
}

// trusteeCertChain takes the report's endorsement key from the serde
// CertTableEntry list: {"cert_type": "VCEK"|"VLEK"|"ASK"|"ARK"|"CRL"|
// "Empty" or {"OTHER": UUID}, "data": [bytes]}. The VCEK or VLEK becomes
// that part; the ASK and ARK must be certificates but are not carried:
// verify chains the key to the AMD roots it embeds, whatever the evidence
// says (Trustee checks a given ARK against its own and may use a given
// ASK; ccmr uses its own). A CRL or another GUID's entry is refused rather
// than dropped unread, and so is a chain without a VCEK or VLEK, as
// Trustee refuses it. A null chain (Trustee then fetches the VCEK from
// AMD's KDS) leaves the key to --vcek or --vlek.
func trusteeCertChain(f File, cc json.RawMessage, p *Parts) error {
	if bytes.Equal(bytes.TrimSpace(cc), []byte("null")) {
		return nil
	}
	var entries []json.RawMessage
	if err := strictjson.Decode(cc, &entries); err != nil {
		return trusteeErr(f, "cert_chain", "%w: neither null nor an array of CertTableEntry", mr.ErrMalformed)
	}
	for i, e := range entries {
		m := fmt.Sprintf("cert_chain[%d]", i)
		var ent map[string]json.RawMessage
		if err := strictjson.Decode(e, &ent); err != nil || ent == nil {
			return trusteeErr(f, m, "%w: not a JSON object", mr.ErrMalformed)
		}
		for name := range ent {
			if name != "cert_type" && name != "data" {
				return trusteeErr(f, m+"."+name, "%w: %w: CertTableEntry has cert_type and data", mr.ErrMalformed, strictjson.ErrUnknown)
			}
		}
		for _, name := range []string{"cert_type", "data"} {
			if _, ok := ent[name]; !ok {
				return trusteeErr(f, m+"."+name, "%w: missing", mr.ErrMalformed)
			}
		}
		var typ string
		if err := strictjson.Decode(ent["cert_type"], &typ); err != nil {
			var other map[string]string
			if err := strictjson.Decode(ent["cert_type"], &other); err == nil && len(other) == 1 && other["OTHER"] != "" {
				return trusteeErr(f, m+".cert_type", "%w: a certificate of GUID %s is not imported", mr.ErrUnsupported, other["OTHER"])
			}
			return trusteeErr(f, m+".cert_type", "%w: not a CertType (a variant name, or {\"OTHER\": GUID})", mr.ErrMalformed)
		}
		data, err := serdeByteArray(f, m+".data", ent["data"])
		if err != nil {
			return err
		}
		switch typ {
		case "VCEK", "VLEK", "ASK", "ARK":
		case "CRL", "Empty":
			return trusteeErr(f, m+".cert_type", "%w: a %s entry is not imported", mr.ErrUnsupported, typ)
		default:
			return trusteeErr(f, m+".cert_type", "%w: %q is no CertType variant", mr.ErrMalformed, typ)
		}
		if _, err := ParseCertificates(data); err != nil {
			return trusteeErr(f, m+".data", "%s: %w", typ, err)
		}
		if typ == "ASK" || typ == "ARK" {
			continue
		}
		if p.VCEK != nil || p.VLEK != nil {
			return trusteeErr(f, m+".cert_type", "%w: a second endorsement key (%s); Trustee would take the first, ccmr takes none", mr.ErrMalformed, typ)
		}
		file := &File{Name: member(f, m+".data"), Data: data}
		if typ == "VCEK" {
			p.VCEK = file
		} else {
			p.VLEK = file
		}
	}
	if p.VCEK == nil && p.VLEK == nil {
		// Trustee refuses a given chain without one ("it must include a
		// VCEK/VLEK") rather than fetch the VCEK: so does ccmr, rather
		// than take one given beside it.
		return trusteeErr(f, "cert_chain", "%w: %d entries and no VCEK or VLEK (a chain without one is refused, as Trustee refuses it; null leaves the key to %s/%s)", ErrMissing, len(entries), PartVCEK, PartVLEK)
	}
	return nil
}
