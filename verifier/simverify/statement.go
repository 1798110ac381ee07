// Package simverify checks the evidence of ccmr's software device (sim)
// without the device: the register layouts, the canonical signed statement
// and its ECDSA P-384 signature by a pinned key. backend/sim signs with it;
// the offline verifier checks with it, on any system.
package simverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
)

// StatementFormat is the "format" member of the sim device's signed statement.
const StatementFormat = "ccmr-sim-attestation/v1"

// MaxNonce is the longest nonce a statement carries, in bytes.
const MaxNonce = 1024

// maxStatementSize bounds what ParseStatement reads.
const maxStatementSize = 1 << 20

// Errors of evidence verification.
var (
	// ErrSignature: the signature does not verify with the trusted key.
	ErrSignature = errors.New("sim: signature does not verify")
	// ErrUntrustedKey: the evidence names a public key other than the trusted one.
	ErrUntrustedKey = errors.New("sim: evidence key is not the trusted key")
	// ErrEvidenceMismatch: an unsigned field of the evidence (nonce, time,
	// registers, platform) disagrees with the signed statement.
	ErrEvidenceMismatch = errors.New("sim: evidence disagrees with its signed statement")
)

// Statement is what the sim device signs. Its encoding (Marshal) is compact
// JSON with the members in this order, one line, no trailing newline:
//
//	{"format":"ccmr-sim-attestation/v1","layout":"tdx","nonce":"HEX",
//	 "time":"RFC3339Nano UTC","registers":[{"name":"mrtd","alg":"sha384",
//	 "index":0,"value":"HEX"},...]}
//
// registers lists every reported register of the layout in layout order
// (Layout.Registers). Hex is lowercase. The signature is ECDSA P-384 over
// SHA-384 of exactly these bytes, ASN.1 DER encoded. ParseStatement accepts
// only this canonical encoding: the bytes must equal the re-encoding of what
// they parse to.
type Statement struct {
	Layout Layout
	Nonce  []byte
	Time   time.Time
	Values []mr.Value
}

type statementJSON struct {
	Format    string         `json:"format"`
	Layout    string         `json:"layout"`
	Nonce     string         `json:"nonce"`
	Time      string         `json:"time"`
	Registers []stmtRegister `json:"registers"`
}

type stmtRegister struct {
	Name  string `json:"name"`
	Alg   string `json:"alg"`
	Index int    `json:"index"`
	Value string `json:"value"`
}

// Marshal returns the canonical encoding of s.
func (s *Statement) Marshal() []byte {
	j := statementJSON{Format: StatementFormat, Layout: string(s.Layout), Nonce: hex.EncodeToString(s.Nonce),
		Time: s.Time.UTC().Format(time.RFC3339Nano), Registers: make([]stmtRegister, len(s.Values))}
	for i, v := range s.Values {
		j.Registers[i] = stmtRegister{Name: v.Register.Name, Alg: v.Register.Alg.String(), Index: v.Register.Index,
			Value: hex.EncodeToString(v.Digest.Bytes)}
	}
	b, err := json.Marshal(j)
	if err != nil { // cannot happen: only strings and integers
		panic(err)
	}
	return b
}

// reported returns the registers of l the statement covers.
func reported(l Layout) []mr.Register {
	var out []mr.Register
	for _, r := range l.Registers() {
		if r.Flags&mr.Reported != 0 {
			out = append(out, r)
		}
	}
	return out
}

// ParseStatement decodes a signed statement without checking its signature
// (use VerifyStatement or VerifyEvidence for that). It accepts only the
// canonical encoding described at Statement; errors wrap mr.ErrMalformed.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > maxStatementSize {
		return nil, fmt.Errorf("%w: sim statement is %d bytes, more than %d", mr.ErrMalformed, len(b), maxStatementSize)
	}
	var j statementJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: sim statement: %v", mr.ErrMalformed, err)
	}
	if j.Format != StatementFormat {
		return nil, fmt.Errorf("%w: sim statement: format %q, want %q", mr.ErrMalformed, j.Format, StatementFormat)
	}
	l, err := ParseLayout(j.Layout)
	if err != nil {
		return nil, fmt.Errorf("%w: sim statement: %v", mr.ErrMalformed, err)
	}
	nonce, err := hex.DecodeString(j.Nonce)
	if err != nil {
		return nil, fmt.Errorf("%w: sim statement: nonce: %v", mr.ErrMalformed, err)
	}
	if len(nonce) > MaxNonce {
		return nil, fmt.Errorf("%w: sim statement: nonce is %d bytes, more than %d", mr.ErrMalformed, len(nonce), MaxNonce)
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return nil, fmt.Errorf("%w: sim statement: time: %v", mr.ErrMalformed, err)
	}
	want := reported(l)
	regs := make([]ValueJSON, len(j.Registers))
	for i, r := range j.Registers {
		if i < len(want) && r.Index != want[i].Index {
			return nil, fmt.Errorf("%w: sim statement: register %d (%s) has index %d, want %d", mr.ErrMalformed, i, r.Name, r.Index, want[i].Index)
		}
		regs[i] = ValueJSON{Name: r.Name, Alg: r.Alg, Value: r.Value}
	}
	vals, err := ParseValues(want, regs)
	if err != nil {
		return nil, fmt.Errorf("sim statement: %w", err)
	}
	s := &Statement{Layout: l, Nonce: nonce, Time: t, Values: vals}
	if !bytes.Equal(s.Marshal(), b) {
		return nil, fmt.Errorf("%w: sim statement is not in canonical form (compact JSON, members in order, lowercase hex, UTC time)", mr.ErrMalformed)
	}
	return s, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" (PKIX) holding an ECDSA P-384 key.
func ParsePublicKey(pemBytes []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: sim key: no PEM PUBLIC KEY block", mr.ErrMalformed)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: sim key: %v", mr.ErrMalformed, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: sim key: want an ECDSA P-384 key, got %T", mr.ErrUnsupported, k)
	}
	return pub, nil
}

// VerifyStatement checks that sig is an ECDSA P-384 signature (ASN.1 DER)
// over SHA-384 of report by the key in trustedKeyPEM, then parses the
// statement. Only after both succeed are the values trustworthy.
func VerifyStatement(report, sig, trustedKeyPEM []byte) (*Statement, error) {
	pub, err := ParsePublicKey(trustedKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("trusted %w", err)
	}
	h := sha512.Sum384(report)
	if !ecdsa.VerifyASN1(pub, h[:], sig) {
		return nil, ErrSignature
	}
	return ParseStatement(report)
}

// VerifyEvidence verifies sim evidence against the pinned key trustedKeyPEM
// and returns the signed statement (nonce, time, register values). Besides
// the signature it checks that the evidence is marked platform sim and that
// its unsigned copies (PublicKey, Nonce, Time, Registers), where present,
// agree with what was signed. The caller still compares the nonce with the
// one it issued.
func VerifyEvidence(ev *mr.Evidence, trustedKeyPEM []byte) (*Statement, error) {
	if ev == nil {
		return nil, fmt.Errorf("%w: sim: no evidence", mr.ErrMalformed)
	}
	if ev.Platform != mr.PlatformSim {
		return nil, fmt.Errorf("%w: platform is %q, want %q", ErrEvidenceMismatch, ev.Platform, mr.PlatformSim)
	}
	trusted, err := ParsePublicKey(trustedKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("trusted %w", err)
	}
	if len(ev.PublicKey) > 0 {
		k, err := ParsePublicKey(ev.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("evidence %w", err)
		}
		if !k.Equal(trusted) {
			return nil, ErrUntrustedKey
		}
	}
	s, err := VerifyStatement(ev.Report, ev.Signature, trustedKeyPEM)
	if err != nil {
		return nil, err
	}
	if ev.Nonce != nil && !bytes.Equal(ev.Nonce, s.Nonce) {
		return nil, fmt.Errorf("%w: nonce %x, signed %x", ErrEvidenceMismatch, ev.Nonce, s.Nonce)
	}
	if !ev.Time.IsZero() && !ev.Time.Equal(s.Time) {
		return nil, fmt.Errorf("%w: time %v, signed %v", ErrEvidenceMismatch, ev.Time, s.Time)
	}
	if ev.Registers != nil {
		if len(ev.Registers) != len(s.Values) {
			return nil, fmt.Errorf("%w: %d registers, %d signed", ErrEvidenceMismatch, len(ev.Registers), len(s.Values))
		}
		for i, v := range ev.Registers {
			w := s.Values[i]
			if v.Register.Name != w.Register.Name || !v.Digest.Equal(w.Digest) {
				return nil, fmt.Errorf("%w: register %d is %s=%v, signed %s=%v", ErrEvidenceMismatch, i,
					v.Register.Name, v.Digest, w.Register.Name, w.Digest)
			}
		}
	}
	return s, nil
}

// ValueJSON is one register value as the statement and the sim state file
// encode it.
type ValueJSON struct {
	Name  string `json:"name"`
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

// ParseValues checks that got lists exactly the registers of want, in order,
// and decodes their values (lowercase hex of each register's size); errors
// wrap mr.ErrMalformed. The sim state file uses it too.
func ParseValues(want []mr.Register, got []ValueJSON) ([]mr.Value, error) {
	if len(got) != len(want) {
		return nil, fmt.Errorf("%w: %d registers, want %d", mr.ErrMalformed, len(got), len(want))
	}
	vals := make([]mr.Value, len(want))
	for i, r := range want {
		g := got[i]
		if g.Name != r.Name || g.Alg != r.Alg.String() {
			return nil, fmt.Errorf("%w: register %d is %s/%s, want %s/%v", mr.ErrMalformed, i, g.Name, g.Alg, r.Name, r.Alg)
		}
		if len(g.Value) != 2*r.Size {
			return nil, fmt.Errorf("%w: register %s/%v: value has %d hex digits, want %d", mr.ErrMalformed, r.Name, r.Alg, len(g.Value), 2*r.Size)
		}
		v, err := hex.DecodeString(g.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: register %s/%v: %v", mr.ErrMalformed, r.Name, r.Alg, err)
		}
		if hex.EncodeToString(v) != g.Value {
			return nil, fmt.Errorf("%w: register %s/%v: hex must be lowercase", mr.ErrMalformed, r.Name, r.Alg)
		}
		vals[i] = mr.Value{Register: r, Digest: mr.Digest{Alg: r.Alg, Bytes: v}}
	}
	return vals, nil
}
