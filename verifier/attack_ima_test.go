package verifier

// Attack tests of issue 15 for layers 3-4 (the IMA list and the runtime
// policy): each builds an input that proves nothing, or something else, and
// checks that it is refused. Each failed on the code before the fix (see the
// commit that added it).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// setTemplate rewrites the template name of binary IMA entry i (the name is
// covered by neither the template hash nor the mr_ima record).
func setTemplate(t *testing.T, list []byte, i int, name string) []byte {
	t.Helper()
	es := imaEntries(t, list)
	e := es[i]
	nl := binary.LittleEndian.Uint32(e[24:28])
	ne := append([]byte(nil), e[:24]...)
	ne = binary.LittleEndian.AppendUint32(ne, uint32(len(name)))
	ne = append(ne, name...)
	ne = append(ne, e[28+nl:]...)
	es[i] = ne
	return join(es)
}

// mustNotTrust verifies b and fails the test when it is trusted; it returns
// the report's text.
func mustNotTrust(t *testing.T, b *bundle.Bundle, o Options, want string) string {
	t.Helper()
	rep, err := Verify(context.Background(), b, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	text := reportText(rep)
	if rep.Trusted {
		t.Fatalf("attack trusted:\n%s", text)
	}
	if want != "" && !strings.Contains(text, want) {
		t.Fatalf("failure does not say %q:\n%s", want, text)
	}
	return text
}

func mustTrust(t *testing.T, b *bundle.Bundle, o Options) string {
	t.Helper()
	rep, err := Verify(context.Background(), b, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	text := reportText(rep)
	if !rep.Trusted {
		t.Fatalf("sound input not trusted:\n%s", text)
	}
	return text
}

func dropLogs(b *bundle.Bundle, format string) {
	var keep []bundle.Log
	for _, l := range b.Logs {
		if l.Format != format {
			keep = append(keep, l)
		}
	}
	b.Logs = keep
}

// simTPM makes a bundle of a sim device with the TPM layout whose PCRs were
// extended by the entries of list (each into the PCR it names, in every
// bank), with list as the bundle's IMA list.
func simTPM(t *testing.T, list []byte) (*bundle.Bundle, Options) {
	t.Helper()
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(t.TempDir(), "sim"), sim.WithLayout(sim.LayoutTPM))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	rd := ima.NewBinaryReader(bytes.NewReader(list), ima.Options{})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []mr.Alg{mr.SHA1, mr.SHA256, mr.SHA384} {
			d, err := ima.TemplateHash(e, a, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := dev.Extend(ctx, "pcr"+strconv.Itoa(e.PCR), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	nonce := []byte("sim tpm nonce")
	ev, err := dev.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := bundle.New(ev, []bundle.Log{{Format: "ima-binary", Data: list}}, nil)
	return b, Options{Name: "sim-tpm", AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce}
}

// specsList encodes imatest specs as a little-endian binary list.
func specsList(specs ...imatest.Spec) []byte { return imatest.Binary(specs, binary.LittleEndian) }

// allowAll is a runtime policy that allows every file entry of list.
func allowAll(t *testing.T, list []byte, excludes ...string) *RuntimePolicy {
	t.Helper()
	rp := &RuntimePolicy{Digests: map[string][]string{}, Excludes: excludes}
	rd := ima.NewBinaryReader(bytes.NewReader(list), ima.Options{})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return reparse(t, rp)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, d, ok := e.FileDigest(); ok && !e.IsViolation() {
			rp.Digests[e.FileName()] = append(rp.Digests[e.FileName()], hex.EncodeToString(d))
		}
	}
}

// ---- item 2: policies that judge nothing ----------------------------------

// A runtime policy over a bundle whose mr_ima has records but that holds no
// IMA list passed ("no proven IMA entries to judge").
func TestAttack02_RuntimePolicyNoListMrIMA(t *testing.T) {
	f := makeFixture(t)
	b := f.decode(t)
	o := f.opts()
	o.Policy = &Policy{Runtime: reparse(t, imaPolicy(t, b))}
	mustTrust(t, b, o)
	dropLogs(b, "ima-binary")
	mustNotTrust(t, b, o, "no IMA list")
}

// The same on a real TPM quote: PCR 10 is quoted, the list is left out.
func TestAttack02_RuntimePolicyNoListTPM(t *testing.T) {
	b, o := e2eTPM(t)
	o.Policy = &Policy{Runtime: allowAll(t, logOf(b, "ima-binary").Data)}
	mustTrust(t, b, o)
	dropLogs(b, "ima-binary")
	mustNotTrust(t, b, o, "no IMA list")
}

// A policy register with an empty list of values judged nothing and passed.
func TestAttack02_EmptyRegisterValues(t *testing.T) {
	if _, err := ParsePolicy([]byte(`{"registers":{"pcr0":[]}}`), "."); !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("empty register values: %v", err)
	}
}

// ---- item 5: Keylime excludes ---------------------------------------------

// Keylime's re.match is anchored at the path's start: "/m/.*" does not
// exclude /tmp/m/f0, which Go's MatchString did.
func TestAttack05_ExcludeUnanchored(t *testing.T) {
	f := makeFixture(t)
	b := f.decode(t)
	rp := imaPolicy(t, b)
	for p := range rp.Digests {
		if strings.HasPrefix(p, "/tmp/m/") {
			delete(rp.Digests, p)
		}
	}
	o := f.opts()
	rp.Excludes = []string{"/tmp/m/.*"}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustTrust(t, b, o)
	rp.Excludes = []string{"/m/.*"}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, "not in the runtime policy")
}

// Paths whose exclusion differs between Python's re.match and Go's regexp:
// want is what Keylime does, or "judged" where Go cannot tell (fail closed).
func TestAttack05_ExcludeSemantics(t *testing.T) {
	for _, c := range []struct {
		exclude, path string
		want          bool
	}{
		{"/tmp/.*", "/opt/app/tmp/evil", false}, // the case
		{"/tmp/.*", "/tmp/x", true},
		{"tmp", "/tmp/x", false},
		{"/tmp/m/f1", "/tmp/m/f10", true}, // re.match: a prefix is enough
		{"/var/log$", "/var/log/x", false},
		{`.*\.log$`, "/var/log/a.log", true},
		{`\d+`, "/1", false},
		{`/x/\D`, "/x/\u0661", false},   // Python: U+0661 is a digit; Go's \D matched it
		{"/tmp/.*", "/tmp/\n/x", false}, // cannot reach Keylime as one line: judged
		{"/tmp/.*", "/tmp/\xff", false}, // not UTF-8: judged
	} {
		rp, err := ParseRuntimePolicy([]byte(keylimeFull(t, `{"excludes":[`+jsonString(c.exclude)+`]}`)))
		if err != nil {
			t.Fatalf("%q: %v", c.exclude, err)
		}
		if got := rp.Excluded(c.path); got != c.want {
			t.Errorf("exclude %q, path %q: excluded %v, want %v", c.exclude, c.path, got, c.want)
		}
	}
}

// Excludes Go compiles but reads differently from Python are refused,
// naming the exclude.
func TestAttack05_ExcludeGoOnlySyntax(t *testing.T) {
	for _, e := range []string{
		`/tmp/[[:alpha:]]+`, // POSIX class in Go, a plain set in Python
		`/tmp/\pL`,          // Unicode class: Go only
		`/tmp/\Q.\E`,        // quoting: Go only
		`(?i)/TMP/`,         // global flag: all of Keylime's joined pattern (an error since Python 3.11)
		`/tmp/x{,3}`,        // a quantifier in Python, text in Go
		`/tmp/\z`,           // Go only
		`/tmp/\12`,          // octal in Go, a backreference in Python
		`/tmp/(?U:a+)`,      // ungreedy: Go only
		`/tmp/(?<n>a)`,      // Go only; Python wants (?P<n>…)
		`/tmp/\x{41}`,       // Go only
	} {
		_, err := ParseRuntimePolicy([]byte(keylimeFull(t, `{"excludes":[`+jsonString(e)+`]}`)))
		if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), strconv.Quote(e)) {
			t.Errorf("exclude %q: %v, want a malformed-input error naming it", e, err)
		}
	}
	// Python-only constructs are read as Python reads them
	// (TestKeylimeExcludePython).
	if rp, err := ParseRuntimePolicy([]byte(keylimeFull(t, `{"excludes":["/tmp/(?=x)"]}`))); err != nil || !rp.Excluded("/tmp/x1") || rp.Excluded("/tmp/y") {
		t.Errorf("lookahead: %v", err)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---- item 8: strict policy, runtime policy and bundle files ----------------

func TestAttack08_StrictPolicy(t *testing.T) {
	zero := "sha256:" + strings.Repeat("00", 32)
	// kl is a complete Keylime policy but for the members given, so that
	// each case is refused for what it is about, not for a missing member.
	kl := func(partial string) string { return keylimeFull(t, partial) }
	for name, in := range map[string]string{
		"null":                `null`,
		"second object":       `{} {"registers":{"pcr0":"` + zero + `"}}`,
		"array":               `[]`,
		"keylime null":        `{"ima":{"keylime":null}}`,
		"keylime array":       `{"ima":{"keylime":[]}}`,
		"keylime unknown":     `{"ima":{"keylime":` + kl(`{"exclude":[".*"]}`) + `}}`,
		"keylime second":      `{"ima":{"keylime":` + kl(`{}`) + `}} {"ima":{}}`,
		"verification-keys":   `{"ima":{"keylime":` + kl(`{"verification-keys":"[{\"key\":\"x\"}]"}`) + `}}`,
		"dm_policy":           `{"ima":{"keylime":` + kl(`{"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":{"version":1}}}`) + `}}`,
		"rules":               `{"ima":{"keylime":` + kl(`{"rules":"x"}`) + `}}`,
		"digest not hex":      `{"ima":{"keylime":` + kl(`{"digests":{"/bin/sh":["xyz"]}}`) + `}}`,
		"log_hash_alg":        `{"ima":{"keylime":` + kl(`{"ima":{"ignored_keyrings":[],"log_hash_alg":"md4","dm_policy":null}}`) + `}}`,
		"release negative":    `{"ima":{"keylime":` + kl(`{"release":-1}`) + `}}`,
		"signatures, no keys": `{"ima":{"require_signatures":true}}`,
		"runtime and keylime": `{"ima":{"runtime_policy":"x.json","keylime":` + kl(`{}`) + `}}`,
	} {
		if _, err := ParsePolicy([]byte(in), t.TempDir()); err == nil {
			t.Errorf("%s: policy %s accepted", name, in)
		}
	}
	// Keylime's own members are read.
	full := `{"meta":{"version":1,"generator":1,"timestamp":"t"},"release":0,"digests":{"/bin/sh":["` + strings.Repeat("ab", 32) + `"]},` +
		`"excludes":["/tmp/.*"],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`
	if _, err := ParsePolicy([]byte(`{"ima":{"keylime":`+full+`}}`), "."); err != nil {
		t.Errorf("Keylime's full schema: %v", err)
	}
}

func TestAttack08_StrictBundle(t *testing.T) {
	f := makeFixture(t)
	for name, in := range map[string][]byte{
		"second object":  append(append([]byte(nil), f.bundle...), `{"format":"ccmr-evidence/v1"}`...),
		"unknown member": bytes.Replace(f.bundle, []byte(`"format"`), []byte(`"tdx_quote": "AA==", "format"`), 1),
		"unknown nested": bytes.Replace(f.bundle, []byte(`"report"`), []byte(`"hcl": "AA==", "report"`), 1),
	} {
		if bytes.Equal(in, f.bundle) {
			t.Fatalf("%s: no change made", name)
		}
		if _, err := bundle.Read(bytes.NewReader(in), name); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := bundle.Read(bytes.NewReader(f.bundle), "sound"); err != nil {
		t.Errorf("sound bundle: %v", err)
	}
}

// ---- items 9 and 19: IMA entries on other PCRs, boot_aggregate ------------

// An entry on quoted PCR 11 whose digest is rewritten to an allowed one
// (template hash recomputed): PCR 10 is unchanged, PCR 11 is not what the
// quote says. The honest list is proven (layer 3) and trusted without a
// runtime policy; a Keylime runtime policy fails its PCR 11 entry whatever
// digests says, as Keylime does.
func TestAttack19_RewrittenEntryOnPCR11(t *testing.T) {
	real := imatest.Spec{PCR: 11, Template: "ima-ng", FileAlg: "sha256", Name: "/usr/bin/tool", Digest: mr.SHA256.Sum([]byte("bad tool")).Bytes}
	good := real
	good.Digest = mr.SHA256.Sum([]byte("good tool")).Bytes
	honest := specsList(imatest.NG(0), real, imatest.NG(1))
	forged := specsList(imatest.NG(0), good, imatest.NG(1))
	b, o := simTPM(t, honest)
	mustTrust(t, b, o)
	o.Policy = &Policy{Runtime: allowAll(t, honest)}
	mustNotTrust(t, b, o, `"/usr/bin/tool" is on PCR 11: Keylime fails`)
	logOf(b, "ima-binary").Data = forged
	o.Policy = nil
	mustNotTrust(t, b, o, "pcr11")
	o.Policy = &Policy{Runtime: allowAll(t, forged)}
	mustNotTrust(t, b, o, "pcr11")
}

// A made-up entry for a PCR the evidence does not quote, appended to the
// list: not proven, so a policy cannot judge it and fails; without a policy
// the report says it is not proven.
func TestAttack19_EntryOnUnquotedPCR(t *testing.T) {
	honest := specsList(imatest.NG(0), imatest.NG(1))
	b, o := simTPM(t, honest)
	forged := specsList(imatest.NG(0), imatest.NG(1), imatest.Spec{PCR: 30, Template: "ima-ng", FileAlg: "sha256", Name: "/usr/bin/evil"})
	logOf(b, "ima-binary").Data = forged
	o.Policy = &Policy{Runtime: allowAll(t, forged)}
	mustNotTrust(t, b, o, "which the evidence does not quote")
	o.Policy = nil
	text := mustTrust(t, b, o)
	if !strings.Contains(text, "1 IMA entries on PCR 30 are not proven") {
		t.Fatalf("unproven entry not reported:\n%s", text)
	}
}

// A decoy first entry (on a PCR the quote does not cover) made the
// boot_aggregate check vanish without a word.
func TestAttack09_DecoyBeforeBootAggregate(t *testing.T) {
	b, o := e2eTPM(t)
	text := mustTrust(t, b, o)
	if !strings.Contains(text, "boot_aggregate matches the quoted PCRs") {
		t.Fatalf("boot_aggregate not checked:\n%s", text)
	}
	lg := logOf(b, "ima-binary")
	lg.Data = append(specsList(imatest.Spec{PCR: 30, Template: "ima-ng", FileAlg: "sha256", Name: "/decoy"}), lg.Data...)
	mustNotTrust(t, b, o, "boot_aggregate")
}

// A real TPM bundle reduced to its sha1 quote: the sha256 boot_aggregate
// cannot be checked, which was a silent "not checked" and TRUSTED.
func TestAttack09_BootAggregateBankNotQuoted(t *testing.T) {
	b, o := e2eTPM(t)
	var qs []bundle.TPMQuote
	for _, q := range b.Evidence.TPMQuotes {
		if q.Alg == "sha1" {
			qs = append(qs, q)
		}
	}
	b.Evidence.TPMQuotes = qs
	mustNotTrust(t, b, o, "boot_aggregate cannot be checked")
}

// ---- item 12: unbound template names ---------------------------------------

// ima-sig → ima-nx: same mr_ima record, but the entry had "no file digest"
// and the runtime policy skipped it.
func TestAttack12_UnknownTemplate(t *testing.T) {
	f := makeFixture(t)
	b := f.decode(t)
	rp := imaPolicy(t, b)
	delete(rp.Digests, "/tmp/m/f1") // entry 3: a file the policy forbids
	o := f.opts()
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, "/tmp/m/f1")
	lg := logOf(b, "ima-binary")
	lg.Data = setTemplate(t, lg.Data, 3, "ima-nx")
	mustNotTrust(t, b, o, `template "ima-nx"`)
}

// asciiToBinary re-encodes an ascii IMA list as a binary one.
func asciiToBinary(t *testing.T, ascii []byte) []byte {
	t.Helper()
	var out []byte
	rd := ima.NewASCIIReader(bytes.NewReader(ascii), ima.Options{})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(e.PCR))
		out = append(out, e.TemplateHash...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.TemplateName)))
		out = append(out, e.TemplateName...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.TemplateData)))
		out = append(out, e.TemplateData...)
	}
}

// ima-sig → ima-buf turned a signature by a key the policy does not know
// into "unsigned" (Keylime's real ima-sig list: entry 3 is signed by the EC
// key, which the policy leaves out).
func TestAttack12_SigRelabelledBuf(t *testing.T) {
	list := asciiToBinary(t, corpusFile(t, "keylime/ima-sig-openpower-fragment.ascii"))
	b, o := simTPM(t, list)
	keys, err := ima.ParseKeys(corpusFile(t, "keylime/ima-key-rsa2048-pub.pem"), "rsa key")
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ima.ParseKeys(corpusFile(t, "keylime/ima-key-ec-pub.pem"), "ec key")
	if err != nil {
		t.Fatal(err)
	}
	o.Policy = &Policy{IMAKeys: append(append([]ima.Key(nil), keys...), ec...)}
	mustTrust(t, b, o)
	o.Policy = &Policy{IMAKeys: keys}
	mustNotTrust(t, b, o, "key ID")
	lg := logOf(b, "ima-binary")
	for i := range imaEntries(t, lg.Data) {
		lg.Data = setTemplate(t, lg.Data, i, "ima-buf")
	}
	mustNotTrust(t, b, o, "not the hash of the buffer")
}

// ima-buf entries of Keylime's real keyring list are judged against the
// runtime policy's keyrings (or ima-buf), never as files and never skipped.
func TestAttack12_BufJudgedByKeyrings(t *testing.T) {
	list := asciiToBinary(t, corpusFile(t, "keylime/ima-buf-keyring.ascii"))
	b, o := simTPM(t, list)
	rp := &RuntimePolicy{Digests: map[string][]string{}, Keyrings: map[string][]string{}, IMABuf: map[string][]string{}}
	rd := ima.NewBinaryReader(bytes.NewReader(list), ima.Options{})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, d, _ := e.FileDigest()
		sec := rp.Digests
		if e.TemplateName == ima.TemplateIMABuf {
			sec = rp.IMABuf
			if _, err := x509.ParseCertificate(e.Buf()); err == nil {
				sec = rp.Keyrings
			}
		}
		sec[e.FileName()] = append(sec[e.FileName()], hex.EncodeToString(d))
	}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustTrust(t, b, o)
	// The same digests as files do not judge the buffers.
	for k, v := range rp.Keyrings {
		rp.Digests[k] = v
	}
	for k, v := range rp.IMABuf {
		rp.Digests[k] = v
	}
	rp.Keyrings, rp.IMABuf = nil, nil
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, "not in the runtime policy's")
}

// ---- item 21: violations and excludes ---------------------------------------

// A violation's template data is covered by neither the PCR (all-ones is
// extended) nor its listed hash (zeros): renamed to an excluded path, it
// was skipped before the violation check.
func TestAttack21_ViolationRenamedToExcludedPath(t *testing.T) {
	honest := specsList(imatest.NG(0), imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/usr/bin/evil", Violation: true}, imatest.NG(1))
	forged := specsList(imatest.NG(0), imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/tmp/x", Violation: true}, imatest.NG(1))
	b, o := simTPM(t, honest)
	o.Policy = &Policy{Runtime: allowAll(t, honest, "/tmp/.*")}
	mustNotTrust(t, b, o, "violation")
	logOf(b, "ima-binary").Data = forged
	mustNotTrust(t, b, o, "violation")
}
