package verifier

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

var hex64 = strings.Repeat("ab", 32)

// Each member of Keylime's schema v1: a value Keylime accepts at upload is
// read, one it refuses is refused (exit 2: mr.ErrMalformed or, for what
// ccmr does not implement, mr.ErrUnsupported).
func TestKeylimeSchema(t *testing.T) {
	keyring := `{\"pubkeys\": [\"` + base64.StdEncoding.EncodeToString(mustSPKI(t)) + `\"], \"keyids\": [4081397027]}`
	// The cases give the members they are about; keylimeFull adds the
	// rest, empty, as Keylime's schema requires them all.
	ok := map[string]string{
		"keylime empty":      `{"meta":{"version":1,"generator":1},"release":0,"digests":{},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`,
		"meta timestamp":     `{"meta":{"version":1,"generator":3,"timestamp":"2024-08-28 15:13:11"}}`,
		"release":            `{"release":7}`,
		"digests sha1..512":  `{"digests":{"/a":["` + strings.Repeat("a", 40) + `","` + strings.Repeat("b", 128) + `"]}}`,
		"excludes":           `{"excludes":["/tmp/.*","(?P<x>/a)b(?P=x)"]}`,
		"keyrings":           `{"keyrings":{".ima":["` + hex64 + `"]}}`,
		"ima-buf":            `{"ima-buf":{"kexec-cmdline":["` + hex64 + `"]}}`,
		"ignored_keyrings *": `{"ima":{"ignored_keyrings":["*"],"log_hash_alg":"sha256","dm_policy":null}}`,
		"log_hash_alg 512":   `{"ima":{"ignored_keyrings":[],"log_hash_alg":"sha512","dm_policy":null}}`,
		"verification-keys":  `{"verification-keys":"` + keyring + `"}`,
		"keyids computed":    `{"verification-keys":"{\"pubkeys\": [\"` + base64.StdEncoding.EncodeToString(mustSPKI(t)) + `\"], \"keyids\": []}"}`,
	}
	for name, in := range ok {
		in = keylimeFull(t, in)
		if _, err := ParseRuntimePolicy([]byte(in)); err != nil {
			t.Errorf("%s: %s refused: %v", name, in, err)
		}
	}
	refused := map[string]string{
		"meta null":              `{"meta":null}`,
		"meta no generator":      `{"meta":{"version":1}}`,
		"meta version 2":         `{"meta":{"version":2,"generator":0}}`,
		"meta version string":    `{"meta":{"version":"1","generator":0}}`,
		"meta generator string":  `{"meta":{"version":1,"generator":"x"}}`,
		"meta generator 4":       `{"meta":{"version":1,"generator":4}}`,
		"meta unknown":           `{"meta":{"version":1,"generator":0,"x":1}}`,
		"release negative":       `{"release":-1}`,
		"release string":         `{"release":"0"}`,
		"release float":          `{"release":1.5}`,
		"digests uppercase":      `{"digests":{"/a":["` + strings.ToUpper(hex64) + `"]}}`,
		"digests prefix":         `{"digests":{"/a":["sha256:` + hex64 + `"]}}`,
		"digests short":          `{"digests":{"/a":["` + strings.Repeat("a", 39) + `"]}}`,
		"digests long":           `{"digests":{"/a":["` + strings.Repeat("a", 129) + `"]}}`,
		"digests newline":        `{"digests":{"/a":["` + hex64 + `\n"]}}`,
		"digests empty list":     `{"digests":{"/a":[]}}`,
		"digests null list":      `{"digests":{"/a":null}}`,
		"digests string":         `{"digests":{"/a":"` + hex64 + `"}}`,
		"digests null":           `{"digests":null}`,
		"excludes string":        `{"excludes":"/tmp/.*"}`,
		"excludes null":          `{"excludes":null}`,
		"excludes invalid":       `{"excludes":["/tmp/(unclosed"]}`,
		"keyrings uppercase":     `{"keyrings":{".ima":["` + strings.ToUpper(hex64) + `"]}}`,
		"keyrings empty list":    `{"keyrings":{".ima":[]}}`,
		"ima-buf prefix":         `{"ima-buf":{"x":["sha256:` + hex64 + `"]}}`,
		"ima-buf empty list":     `{"ima-buf":{"x":[]}}`,
		"ima missing members":    `{"ima":{"log_hash_alg":"sha1"}}`,
		"ignored_keyrings null":  `{"ima":{"ignored_keyrings":null,"log_hash_alg":"sha1","dm_policy":null}}`,
		"ignored_keyrings ints":  `{"ima":{"ignored_keyrings":[1],"log_hash_alg":"sha1","dm_policy":null}}`,
		"log_hash_alg md5":       `{"ima":{"ignored_keyrings":[],"log_hash_alg":"md5","dm_policy":null}}`,
		"log_hash_alg uppercase": `{"ima":{"ignored_keyrings":[],"log_hash_alg":"SHA1","dm_policy":null}}`,
		"dm_policy":              `{"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":{}}}`,
		"verification-keys list": `{"verification-keys":"[]"}`,
		"verification-keys null": `{"verification-keys":"null"}`,
		"verification-keys obj":  `{"verification-keys":{}}`,
		"verification-keys bad":  `{"verification-keys":"{\"pubkeys\": [\"AAAA\"], \"keyids\": []}"}`,
		"no keyids":              `{"verification-keys":"{\"pubkeys\": []}"}`,
		"verification-keys cert": `{"verification-keys":"{\"pubkeys\": [\"` + base64.StdEncoding.EncodeToString(newKeylimeSigner(t).cert) + `\"], \"keyids\": []}"}`,
		"keyid string":           `{"verification-keys":"{\"pubkeys\": [], \"keyids\": [\"1\"]}"}`,
		"unknown member":         `{"exclude":[]}`,
		"envelope, no key":       `{"payload":"e30=","payloadType":"application/vnd.keylime+json","signatures":[]}`,
	}
	for name, in := range refused {
		if !strings.HasPrefix(name, "envelope") {
			in = keylimeFull(t, in)
		}
		_, err := ParseRuntimePolicy([]byte(in))
		if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
			t.Errorf("%s: %s: %v, want refused", name, in, err)
		}
	}
	// Keylime's upload refuses a policy lacking any required member
	// (before, ccmr read a missing member as empty and judged the policy).
	for _, m := range keylimeRequired {
		var full map[string]json.RawMessage
		if err := json.Unmarshal([]byte(keylimeEmpty), &full); err != nil {
			t.Fatal(err)
		}
		delete(full, m)
		in, _ := json.Marshal(full)
		_, err := ParseRuntimePolicy(in)
		if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "member "+m+" is missing") {
			t.Errorf("policy without %s: %v, want refused naming it", m, err)
		}
	}
	if _, err := ParseRuntimePolicy([]byte(`{}`)); !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "member meta is missing") {
		t.Errorf("{}: %v, want refused naming meta", err)
	}
}

// keylimeRequired are the members RUNTIME_POLICY_SCHEMA requires.
var keylimeRequired = []string{"meta", "release", "digests", "excludes", "keyrings", "ima", "ima-buf", "verification-keys"}

// keylimeEmpty is Keylime's EMPTY_RUNTIME_POLICY.
const keylimeEmpty = `{"meta":{"version":1,"generator":1},"release":0,"digests":{},"excludes":[],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`

// keylimeFull returns the members of the JSON object partial over
// keylimeEmpty: a complete policy differing only in what partial gives.
func keylimeFull(t testing.TB, partial string) string {
	t.Helper()
	var full, part map[string]json.RawMessage
	if err := json.Unmarshal([]byte(keylimeEmpty), &full); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(partial), &part); err != nil {
		t.Fatalf("%s: %v", partial, err)
	}
	for k, v := range part {
		full[k] = v
	}
	b, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustSPKI(t *testing.T) []byte {
	t.Helper()
	b, _ := pem.Decode(corpusFile(t, "keylime/ima-key-rsa2048-pub.pem"))
	return b.Bytes
}

// Keylime joins the excludes into one Python pattern "(e1)|(e2)|…" and
// re.matches it. want was checked against CPython's re.match on the joined
// pattern (TestKeylimeExcludeCPython repeats that where python3 is
// installed).
type keylimeExcludeCase struct {
	excludes []string
	path     string
	want     bool
}

// MarshalJSON gives the case to TestKeylimeExcludeCPython's script.
func (c keylimeExcludeCase) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"Excludes": c.excludes, "Path": c.path})
}

var keylimeExcludeCases = []keylimeExcludeCase{
	{[]string{`/tmp/(?=x)`}, "/tmp/x1", true},
	{[]string{`/tmp/(?=x)`}, "/tmp/y1", false},
	{[]string{`/tmp/(?!keep/)`}, "/tmp/keep/a", false},
	{[]string{`/tmp/(?!keep/)`}, "/tmp/other", true},
	{[]string{`.*(?<=\.log)$`}, "/var/a.log", true},
	{[]string{`.*(?<!\.so)$`}, "/lib/a.so", false},
	{[]string{`.*(?<!\.so)$`}, "/lib/a.sh", true},
	{[]string{`/(a)\2`}, "/aa", true},            // group 1 is the wrapper "(e1)", group 2 is (a)
	{[]string{`/(a)\2`}, "/a", false},            //
	{[]string{`/x(a)`, `/y\2`}, "/ya", false},    // \2 is the first exclude's group: unset here, no match
	{[]string{`/x(a)`, `/y(b)\4`}, "/ybb", true}, // numbering runs across the join
	{[]string{`/(?P<d>[a-z]+)/(?P=d)`}, "/etc/etc/x", true},
	{[]string{`/(?P<d>[a-z]+)/(?P=d)`}, "/etc/usr/x", false},
	{[]string{`/tmp\Z`}, "/tmp", true},
	{[]string{`/tmp\Z`}, "/tmp/x", false},
	{[]string{`/tmp$`}, "/tmp", true},
	{[]string{`/opt`, `/tmp`}, "/tmp/x", true},
	{[]string{`/opt`, `/tmp`}, "/x/tmp", false},
	{[]string{`(?i:/TMP/)`}, "/tmp/a", true},
	{[]string{`(?#comment)/tmp`}, "/tmp", true},
	{[]string{``}, "/anything", true}, // "()" matches every path in Keylime
	{[]string{`[]a]x`}, "]x", true},
	{[]string{`[^]a]x`}, "bx", true},
	{[]string{`/a{2}`}, "/aa", true},
	{[]string{`/a{x`}, "/a{x", true},
	{[]string{`\x2ftmp`}, "/tmp", true},
	{[]string{`\u002ftmp`}, "/tmp", true},
	{[]string{`/x/\d`}, "/x/1", true},
}

func TestKeylimeExcludePython(t *testing.T) {
	for _, c := range keylimeExcludeCases {
		rp, err := ParseRuntimePolicy(excludesJSON(t, c.excludes))
		if err != nil {
			t.Errorf("%q: %v", c.excludes, err)
			continue
		}
		if got := rp.Excluded(c.path); got != c.want {
			t.Errorf("excludes %q, path %q: excluded %v, want %v (Python's re.match)", c.excludes, c.path, got, c.want)
		}
	}
}

func excludesJSON(t testing.TB, ex []string) []byte {
	b, _ := json.Marshal(map[string]any{"excludes": ex})
	return []byte(keylimeFull(t, string(b)))
}

// Excludes that Python refuses, that depend on the Python version, or that
// regexp2 would read differently from Python are refused, naming the
// exclude and the construct.
func TestKeylimeExcludeRefused(t *testing.T) {
	for _, c := range []struct {
		excludes []string
		why      string
	}{
		{[]string{`/a*+`}, "possessive"},
		{[]string{`/(?>a)`}, "atomic"},
		{[]string{`.*(?<=\.(log|txt))$`}, "lookbehind"},
		{[]string{`.*(?<=a+)`}, "lookbehind"},
		{[]string{`/a)|(.*`}, "closes a group"},
		{[]string{`(/a`}, "not closed"},
		{[]string{`(?P<n>a)`, `(?P<n>b)`}, "defined twice"},
		{[]string{`/\2(a)`}, "not a closed group"},
		{[]string{`(?P=n)(?P<n>a)`}, "no closed group"},
		{[]string{`/\10`}, "two digits"},
		{[]string{`/\0`}, "octal"},
		{[]string{`/(?x: a)`}, "flag"},
		{[]string{`/(?a:\w)`}, "flag"},
		{[]string{`/[a-z-[aeiou]]`}, "subtraction"},
		{[]string{`/[[:alpha:]]`}, "POSIX"},
		{[]string{`/\G`}, "not a Python escape"},
		{[]string{`/\k<n>`}, "not a Python escape"},
		{[]string{`/\pL`}, "not a Python escape"},
		{[]string{`/\z`}, "not a Python escape"},
		{[]string{`/\x{41}`}, "two hex digits"},
		{[]string{`/[\Z]`}, "in a set"},
		{[]string{`(?i)/tmp`}, "global inline flag"},
		{[]string{`/(?<n>a)`}, "not Python"},
		{[]string{`/(?(1)a|b)`}, "conditional"},
		{[]string{`/x{,3}`}, "quantifier"},
		{[]string{`/(a`}, "not closed"},
		{[]string{`/a\`}, "backslash"},
	} {
		_, err := ParseRuntimePolicy(excludesJSON(t, c.excludes))
		if !errors.Is(err, mr.ErrMalformed) || !errors.Is(err, errExclude) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("excludes %q: %v, want refused saying %q", c.excludes, err, c.why)
		}
	}
}

// keylimeSigner signs IMA file digests as evmctl does (digsig v2,
// ECDSA P-256 over sha256) with the key of a certificate that a keyring
// ima-buf entry can carry.
type keylimeSigner struct {
	key  *ecdsa.PrivateKey
	cert []byte
	id   uint32
}

func newKeylimeSigner(t *testing.T) *keylimeSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skid := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0xde, 0xad, 0xbe, 0xef}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ima signer"}, SubjectKeyId: skid}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &keylimeSigner{key: k, cert: der, id: 0xdeadbeef}
}

func (s *keylimeSigner) sign(t *testing.T, digest []byte) []byte {
	t.Helper()
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, digest)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{3, 2, 4}
	out = binary.BigEndian.AppendUint32(out, s.id)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sig)))
	return append(out, sig...)
}

func bufSpec(name string, buf []byte) imatest.Spec {
	d := sha256.Sum256(buf)
	return imatest.Spec{Template: "ima-buf", FileAlg: "sha256", Name: name, Buf: buf, Digest: d[:]}
}

func sum256(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

// The attack of issue 18: a buffer's name listed in digests passed the
// buffer. ima-buf entries are judged against ima-buf, key buffers against
// keyrings, never against digests; a buffer holding a key in any form
// Keylime's get_pubkey reads (not only a certificate) is a key.
func TestKeylimeBufNeverDigests(t *testing.T) {
	s := newKeylimeSigner(t)
	spki, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	for name, c := range map[string]struct {
		buf   []byte
		isKey bool
	}{
		"kexec-cmdline":      {[]byte("root=/dev/vda1 ro"), false},
		"key as certificate": {s.cert, true},
		"key as DER SPKI":    {spki, true},
		"key as PEM SPKI":    {pemKey, true},
	} {
		t.Run(name, func(t *testing.T) {
			entry := bufSpec(".ima", c.buf)
			if !c.isKey {
				entry.Name = "kexec-cmdline"
			}
			list := specsList(imatest.NG(0), entry)
			b, o := simTPM(t, list)
			dh := hex.EncodeToString(entry.Digest)
			base := allowAll(t, specsList(imatest.NG(0)))
			judge := func(member string) *RuntimePolicy {
				rp := *base
				rp.Digests = map[string][]string{}
				for k, v := range base.Digests {
					rp.Digests[k] = v
				}
				m := map[string][]string{entry.Name: {dh}}
				switch member {
				case "digests":
					rp.Digests[entry.Name] = []string{dh}
				case "ima-buf":
					rp.IMABuf = m
				case "keyrings":
					rp.Keyrings = m
				}
				return reparse(t, &rp)
			}
			right, wrong := "ima-buf", "keyrings"
			if c.isKey {
				right, wrong = wrong, right
			}
			o.Policy = &Policy{Runtime: judge(right)}
			mustTrust(t, b, o)
			o.Policy = &Policy{Runtime: judge("digests")}
			mustNotTrust(t, b, o, "not in the runtime policy's "+right)
			o.Policy = &Policy{Runtime: judge(wrong)}
			mustNotTrust(t, b, o, "not in the runtime policy's "+right)
		})
	}
}

// A key of an ignored keyring is neither judged nor loaded: a file it
// signed is then judged by digests. A key an accepted keyring entry loaded
// accepts a later file it signed whatever digests says, not an earlier one.
func TestKeylimeKeyringKeys(t *testing.T) {
	s := newKeylimeSigner(t)
	fd := sum256([]byte("signed tool"))
	signed := imatest.Spec{Template: "ima-sig", FileAlg: "sha256", Name: "/usr/bin/tool", Digest: fd, Sig: s.sign(t, fd)}
	key := bufSpec(".ima", s.cert)
	keyring := map[string][]string{".ima": {hex.EncodeToString(key.Digest)}}
	policy := func(ignored []string, digests map[string][]string) *RuntimePolicy {
		rp := &RuntimePolicy{Digests: digests, Keyrings: keyring}
		if ignored != nil {
			rp.IMA = &KeylimeIMA{IgnoredKeyrings: ignored, LogHashAlg: "sha1", DMPolicy: json.RawMessage("null")}
		}
		return reparse(t, rp)
	}
	boot := allowAll(t, specsList(imatest.NG(0))).Digests
	wrongDigest := map[string][]string{"/usr/bin/tool": {hex64}}
	for k, v := range boot {
		wrongDigest[k] = v
	}

	b, o := simTPM(t, specsList(imatest.NG(0), key, signed))
	o.Policy = &Policy{Runtime: policy(nil, boot)}
	text := mustTrust(t, b, o)
	if !strings.Contains(text, "1 files accepted by a valid signature") {
		t.Errorf("report does not count the signed file:\n%s", text)
	}
	o.Policy = &Policy{Runtime: policy(nil, wrongDigest)}
	mustTrust(t, b, o) // the signature accepts it whatever digests says
	o.Policy = &Policy{Runtime: policy([]string{".ima"}, boot)}
	mustNotTrust(t, b, o, `file "/usr/bin/tool" is not in the runtime policy`)
	o.Policy = &Policy{Runtime: policy([]string{"*"}, wrongDigest)}
	mustNotTrust(t, b, o, "not a reference digest")

	// The key must be loaded before the file it signed.
	b, o = simTPM(t, specsList(imatest.NG(0), signed, key))
	o.Policy = &Policy{Runtime: policy(nil, boot)}
	mustNotTrust(t, b, o, `file "/usr/bin/tool" is not in the runtime policy`)

	// A keyring entry that fails does not load its key (the run stops there).
	b, o = simTPM(t, specsList(imatest.NG(0), key, signed))
	rp := &RuntimePolicy{Digests: boot, Keyrings: map[string][]string{".ima": {hex64}}}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, "not one the runtime policy's keyrings lists")

	// A bad signature falls back to digests, as in Keylime.
	bad := signed
	bad.Sig = s.sign(t, sum256([]byte("other")))
	b, o = simTPM(t, specsList(imatest.NG(0), key, bad))
	o.Policy = &Policy{Runtime: policy(nil, wrongDigest)}
	mustNotTrust(t, b, o, "not a reference digest")
}

// Keylime's test_mixed_verfication on the corpus's lines of its test: the
// signatures of /usr/bin/dd (RSA) and /usr/bin/zmore (secp256k1) verify
// with verification-keys, so the wrong digests of RUNTIME_POLICY_WRONG do
// not fail them; without the keys they do.
func TestKeylimeCorpusVerificationKeys(t *testing.T) {
	list := asciiToBinary(t, corpusFile(t, "keylime/ima-sig-openpower-fragment.ascii"))
	b, o := simTPM(t, list)
	rp := allowAll(t, list)
	rp.Digests["/usr/bin/dd"] = []string{"bad05d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef"}
	rp.Digests["/usr/bin/zmore"] = []string{"bad00b8dd04a5935cd8165aa2260cd11b658bd71629bdb52256a675a1f73907b"}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, "not a reference digest")
	var pubs []string
	for _, f := range []string{"keylime/ima-key-rsa2048-pub.pem", "keylime/ima-key-ec-pub.pem"} {
		blk, _ := pem.Decode(corpusFile(t, f))
		pubs = append(pubs, base64.StdEncoding.EncodeToString(blk.Bytes))
	}
	// Keylime's IMA_KEYRING_STRING: both keys with their key IDs.
	kr, _ := json.Marshal(map[string]any{"pubkeys": pubs, "keyids": []int64{4081397027, 1394556965}})
	rp.VerificationKeys = string(kr)
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	text := mustTrust(t, b, o)
	if !strings.Contains(text, "2 files accepted by a valid signature") {
		t.Errorf("report:\n%s", text)
	}
	// Key IDs computed from the keys, as Keylime does when none is given.
	kr, _ = json.Marshal(map[string]any{"pubkeys": pubs, "keyids": []int64{}})
	rp.VerificationKeys = string(kr)
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustTrust(t, b, o)
	// Only the RSA key: zmore's signature is by the other key.
	kr, _ = json.Marshal(map[string]any{"pubkeys": pubs[:1], "keyids": []int64{4081397027}})
	rp.VerificationKeys = string(kr)
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	mustNotTrust(t, b, o, `"/usr/bin/zmore" has digest`)
}

// Keylime's test_ima_buf_verification: the corpus's keyring line passes
// RUNTIME_POLICY_TEST's keyrings; as ima-buf, digests or with another
// digest it does not.
func TestKeylimeCorpusKeyring(t *testing.T) {
	list := asciiToBinary(t, corpusFile(t, "keylime/ima-buf-keyring.ascii"))
	b, o := simTPM(t, list)
	const d = "a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a"
	for _, c := range []struct {
		policy string
		ok     bool
	}{
		{`{"keyrings":{".ima":["` + d + `"]}}`, true},
		{`{"ima-buf":{".ima":["` + d + `"]}}`, false},
		{`{"digests":{".ima":["` + d + `"]}}`, false},
		{`{"keyrings":{".ima":["` + hex64 + `"]}}`, false},
		{`{"ima":{"ignored_keyrings":[".ima"],"log_hash_alg":"sha1","dm_policy":null}}`, true},
		{`{"excludes":["\\.ima"]}`, true},
	} {
		rp, err := ParseRuntimePolicy([]byte(keylimeFull(t, c.policy)))
		if err != nil {
			t.Fatal(err)
		}
		o.Policy = &Policy{Runtime: rp}
		if c.ok {
			mustTrust(t, b, o)
		} else {
			mustNotTrust(t, b, o, "keyring")
		}
	}
	// Keylime's BAD_SIGNATURES line: its template hash does not match.
	bad := asciiToBinary(t, corpusFile(t, "keylime/ima-sig-bad-signature-length.ascii"))
	b, o = simTPM(t, bad)
	o.Policy = &Policy{Runtime: allowAll(t, bad)}
	mustNotTrust(t, b, o, "")
}

// ima.log_hash_alg is checked for every entry: the lists carry SHA-1
// template hashes, so any other algorithm fails, as in Keylime.
func TestKeylimeLogHashAlg(t *testing.T) {
	list := specsList(imatest.NG(0), imatest.NG(1))
	b, o := simTPM(t, list)
	rp := allowAll(t, list)
	for alg, ok := range map[string]bool{"sha1": true, "sha256": false, "sha384": false, "sha512": false} {
		rp.IMA = &KeylimeIMA{IgnoredKeyrings: []string{}, LogHashAlg: alg, DMPolicy: json.RawMessage("null")}
		o.Policy = &Policy{Runtime: reparse(t, rp)}
		if ok {
			mustTrust(t, b, o)
		} else {
			mustNotTrust(t, b, o, "ima.log_hash_alg is "+alg)
		}
	}
}

// Violations fail by default; the verification policy's
// ima.allow_violations passes them (Keylime's ignore_tomtou_errors), and
// is refused without a runtime policy.
func TestKeylimeViolations(t *testing.T) {
	list := specsList(imatest.NG(0), imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/var/log/x", Violation: true}, imatest.NG(1))
	b, o := simTPM(t, list)
	kl, _ := json.Marshal(allowAll(t, list))
	dir := t.TempDir()
	p, err := ParsePolicy([]byte(`{"ima":{"keylime":`+string(kl)+`}}`), dir)
	if err != nil {
		t.Fatal(err)
	}
	o.Policy = p
	mustNotTrust(t, b, o, "violation")
	p, err = ParsePolicy([]byte(`{"ima":{"allow_violations":true,"keylime":`+string(kl)+`}}`), dir)
	if err != nil {
		t.Fatal(err)
	}
	o.Policy = p
	if text := mustTrust(t, b, o); !strings.Contains(text, "1 violations allowed") {
		t.Errorf("report:\n%s", text)
	}
	if _, err := ParsePolicy([]byte(`{"ima":{"allow_violations":true}}`), dir); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("allow_violations without a runtime policy: %v", err)
	}
}

// A template Keylime does not read fails under a runtime policy.
func TestKeylimeTemplates(t *testing.T) {
	fd := sum256([]byte("modsig"))
	list := specsList(imatest.NG(0), imatest.Spec{Template: "ima-modsig", FileAlg: "sha256", Name: "/lib/m.ko", Digest: fd})
	b, o := simTPM(t, list)
	o.Policy = &Policy{Runtime: allowAll(t, list)}
	mustNotTrust(t, b, o, "which Keylime does not read")
}

// Signed policies: Keylime's own envelopes (both backends) verify with the
// signer's key or certificate and are then used; a tampered payload, a
// wrong key, another payload type, an unsigned policy with a key, and an
// envelope without a key are refused.
func TestKeylimeDSSE(t *testing.T) {
	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "keylime", f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pub, err := ParseDSSEKey(read("ec-p521-public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseDSSEKey(read("signer-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		key  *ecdsa.PublicKey
	}{{"signed-ecdsa.json", pub}, {"signed-x509.json", cert}, {"signed-x509.json", pub}} {
		rp, err := ParseSignedRuntimePolicy(read(c.file), c.key)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !rp.Allowed("/usr/bin/foobar-bin", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") {
			t.Errorf("%s: payload not read", c.file)
		}
	}
	env := read("signed-ecdsa.json")
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(m["payload"].(string))
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tamper := func(f func(map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		f(c)
		b, _ := json.Marshal(c)
		return b
	}
	for name, c := range map[string]struct {
		env []byte
		key *ecdsa.PublicKey
	}{
		"tampered payload": {tamper(func(c map[string]any) {
			c["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"excludes": []`), []byte(`"excludes": [".*"]`), 1))
		}), pub},
		"payload type": {tamper(func(c map[string]any) { c["payloadType"] = "application/json" }), pub},
		"no signature": {tamper(func(c map[string]any) { c["signatures"] = []any{} }), pub},
		"bad base64":   {tamper(func(c map[string]any) { c["signatures"] = []any{map[string]any{"sig": "!"}} }), pub},
		"wrong key":    {env, &other.PublicKey},
		"not signed":   {read("runtime-policy.json"), pub},
	} {
		if _, err := ParseSignedRuntimePolicy(c.env, c.key); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	if !bytes.Contains(payload, []byte(`"excludes": []`)) {
		t.Fatal("the tamper test changes nothing")
	}

	// Through the verification policy: ima.runtime_policy_key, or the
	// CLI's key (LoadPolicyKeylimeKey); not both; none for an envelope.
	dir := t.TempDir()
	for f, data := range map[string][]byte{"rp.json": env, "key.pem": read("ec-p521-public.pem"), "plain.json": read("runtime-policy.json")} {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ParsePolicy([]byte(`{"ima":{"runtime_policy":"rp.json","runtime_policy_key":"key.pem"}}`), dir); err != nil {
		t.Errorf("runtime_policy_key: %v", err)
	}
	if _, err := ParsePolicy([]byte(`{"ima":{"runtime_policy":"rp.json"}}`), dir); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("envelope without key: %v", err)
	}
	if _, err := ParsePolicy([]byte(`{"ima":{"runtime_policy":"plain.json","runtime_policy_key":"key.pem"}}`), dir); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("unsigned with key: %v", err)
	}
	pf := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(pf, []byte(`{"ima":{"runtime_policy":"rp.json"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicyKeylimeKey(pf, read("ec-p521-public.pem")); err != nil {
		t.Errorf("CLI key: %v", err)
	}
	if _, err := LoadPolicyKeylimeKey(pf, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&other.PublicKey))})); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("CLI wrong key: %v", err)
	}
	if err := os.WriteFile(pf, []byte(`{"ima":{"runtime_policy":"rp.json","runtime_policy_key":"key.pem"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicyKeylimeKey(pf, read("ec-p521-public.pem")); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("both keys: %v", err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

var _ = ima.TemplateIMABuf

// TestKeylimeExcludeCPython runs Keylime's own matching (the joined
// pattern, re.match) in CPython on keylimeExcludeCases, where python3 is
// installed: the table's expectations are CPython's.
func TestKeylimeExcludeCPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: the table's expectations are checked by TestKeylimeExcludePython alone")
	}
	in, _ := json.Marshal(keylimeExcludeCases)
	const script = `import json, re, sys
out = []
for c in json.load(sys.stdin):
    pat = "(" + ")|(".join(c["Excludes"]) + ")"
    out.append(bool(re.compile(pat).match(c["Path"])))
json.dump(out, sys.stdout)`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var res []bool
	if err := json.Unmarshal(got, &res); err != nil || len(res) != len(keylimeExcludeCases) {
		t.Fatalf("python3 said %s (%v)", got, err)
	}
	for i, c := range keylimeExcludeCases {
		if res[i] != c.want {
			t.Errorf("excludes %q, path %q: CPython's re.match says %v, the table %v", c.excludes, c.path, res[i], c.want)
		}
	}
}

// Keylime's Entry.invalid fails an entry on a PCR other than 10
// (config.IMA_PCR) before anything else: listed in digests, excluded, or a
// violation with violations allowed, it fails under a runtime policy. ccmr
// judged it by the same rules as a PCR 10 entry (the PCR 11 entry passed).
// Without a runtime policy the entry is proven against its quoted PCR.
func TestKeylimeEntryOnOtherPCR(t *testing.T) {
	on11 := imatest.Spec{PCR: 11, Template: "ima-ng", FileAlg: "sha256", Name: "/usr/bin/tool", Digest: sum256([]byte("tool"))}
	list := specsList(imatest.NG(0), on11, imatest.NG(1))
	b, o := simTPM(t, list)
	mustTrust(t, b, o)
	o.Policy = &Policy{Runtime: allowAll(t, list)}
	mustNotTrust(t, b, o, `IMA entry "/usr/bin/tool" is on PCR 11: Keylime fails every entry on a PCR other than 10`)
	o.Policy = &Policy{Runtime: allowAll(t, list, "/usr/bin/.*")}
	mustNotTrust(t, b, o, "is on PCR 11")

	viol := imatest.Spec{PCR: 11, Template: "ima-ng", FileAlg: "sha256", Name: "/var/log/x", Violation: true}
	list = specsList(imatest.NG(0), viol, imatest.NG(1))
	b, o = simTPM(t, list)
	kl, _ := json.Marshal(allowAll(t, list))
	p, err := ParsePolicy([]byte(`{"ima":{"allow_violations":true,"keylime":`+string(kl)+`}}`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.Policy = p
	mustNotTrust(t, b, o, `"/var/log/x" is on PCR 11`)
}

// Keylime's integrity_digsig_verify accepts a portable signature
// (EVM_XATTR_PORTABLE_DIGSIG, type 5) as it does type 3: verified over the
// file digest with the keys it knows. ccmr judged such a file by digests
// only (it failed where Keylime passes it).
func TestKeylimePortableSignature(t *testing.T) {
	s := newKeylimeSigner(t)
	fd := sum256([]byte("portable tool"))
	sig := s.sign(t, fd)
	sig[0] = evmXattrPortableDigsig
	signed := imatest.Spec{Template: "ima-sig", FileAlg: "sha256", Name: "/usr/bin/tool", Digest: fd, Sig: sig}
	key := bufSpec(".ima", s.cert)
	keyring := map[string][]string{".ima": {hex.EncodeToString(key.Digest)}}
	digests := allowAll(t, specsList(imatest.NG(0))).Digests
	digests["/usr/bin/tool"] = []string{hex64} // not the file's digest

	b, o := simTPM(t, specsList(imatest.NG(0), key, signed))
	o.Policy = &Policy{Runtime: reparse(t, &RuntimePolicy{Digests: digests, Keyrings: keyring})}
	if text := mustTrust(t, b, o); !strings.Contains(text, "1 files accepted by a valid signature") {
		t.Errorf("report does not count the file signed with a portable signature:\n%s", text)
	}
	// A portable signature that does not verify falls back to digests.
	bad := signed
	bad.Sig = s.sign(t, sum256([]byte("other")))
	bad.Sig[0] = evmXattrPortableDigsig
	b, o = simTPM(t, specsList(imatest.NG(0), key, bad))
	o.Policy = &Policy{Runtime: reparse(t, &RuntimePolicy{Digests: digests, Keyrings: keyring})}
	mustNotTrust(t, b, o, "not a reference digest")
	// The entry's own signature is not changed by the check.
	if e := portableAsDigsig(&ima.Entry{Fields: []ima.Field{{ID: ima.FieldSig, Data: sig}}}); e.Signature()[0] != 3 || sig[0] != evmXattrPortableDigsig {
		t.Errorf("portableAsDigsig: type %d, original %d", e.Signature()[0], sig[0])
	}
}

// An exclude match that does not finish (a pattern that backtracks without
// end, as Python's re would too) stops: the entry is judged, not excluded —
// stricter than Keylime, never more lenient — and the report names the
// entry, whether it then passes by digests or fails.
func TestKeylimeExcludeStopped(t *testing.T) {
	name := "/x/" + strings.Repeat("a", 64) + "!"
	e := imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: name, Digest: sum256([]byte("x"))}
	list := specsList(imatest.NG(0), e)
	b, o := simTPM(t, list)
	const slow = `/x/(a|aa)+$`
	o.Policy = &Policy{Runtime: allowAll(t, list, slow)}
	text := mustTrust(t, b, o)
	if !strings.Contains(text, "IMA entry 1 (byte") || !strings.Contains(text, name) || !strings.Contains(text, "judged, not excluded") {
		t.Errorf("the report does not name the entry whose exclude match stopped:\n%s", text)
	}
	o.Policy = &Policy{Runtime: allowAll(t, specsList(imatest.NG(0)), slow)}
	mustNotTrust(t, b, o, "exclude match on \""+name+"\"")
}
