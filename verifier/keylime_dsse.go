package verifier

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// KeylimePayloadType is the DSSE payload type of a signed Keylime runtime
// policy (KEYLIME_PAYLOAD_TYPE in keylime/policy/sign_runtime_policy.py).
const KeylimePayloadType = "application/vnd.keylime+json"

// dsseEnvelope is a DSSE envelope (https://github.com/secure-systems-lab/dsse,
// envelope.md) as keylime-policy sign writes it.
type dsseEnvelope struct {
	Payload     string `json:"payload"`
	PayloadType string `json:"payloadType"`
	Signatures  []struct {
		KeyID string `json:"keyid,omitempty"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

// isDSSEEnvelope reports whether a runtime policy is a DSSE envelope: an
// object with a non-empty "payload" member, Keylime's own test
// (verify_runtime_policy in keylime/ima/ima.py).
func isDSSEEnvelope(b []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	p, ok := m["payload"]
	return ok && string(p) != `""` && string(p) != "null"
}

// dssePAE is DSSE's pre-authentication encoding, the bytes a signature
// covers: "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
//
// Why hand-written: no DSSE module (go-securesystemslib/dsse) is served to
// this project, and PAE is one line of the specification; it is checked
// against Keylime's own signed test vectors (keylime_dsse_test.go).
func dssePAE(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// keylimeB64Dec decodes as keylime/dsse/dsse.py b64dec does: hex first
// (a payload that is valid hex is read as hex by Keylime), then standard
// base64, then URL-safe base64, all strict.
func keylimeB64Dec(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) > 0 {
		return b, nil
	}
	if b, err := base64.StdEncoding.Strict().DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.Strict().DecodeString(s)
}

// ParseDSSEKey reads the key a signed runtime policy is verified with: a
// PEM EC public key (keylime-policy sign --backend ecdsa) or a PEM X.509
// certificate holding one (--backend x509). Keylime verifies with EC keys
// only.
func ParseDSSEKey(data []byte) (*ecdsa.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: runtime policy signing key: not PEM", mr.ErrMalformed)
	}
	var pub any
	switch b.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: runtime policy signing key: %v", mr.ErrMalformed, err)
		}
		pub = k
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: runtime policy signing certificate: %v", mr.ErrMalformed, err)
		}
		pub = c.PublicKey
	default:
		return nil, fmt.Errorf("%w: runtime policy signing key: PEM block %q, want PUBLIC KEY or CERTIFICATE", mr.ErrMalformed, b.Type)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: runtime policy signing key is a %T; Keylime signs policies with EC keys", mr.ErrUnsupported, pub)
	}
	return k, nil
}

// ParseSignedRuntimePolicy verifies a DSSE envelope holding a Keylime
// runtime policy against key (see ParseDSSEKey) and parses its payload. As
// in Keylime (keylime/signing.py verify_dsse_envelope), the envelope is
// accepted when one of its signatures is an ECDSA-SHA256 signature by key
// over the PAE of its payload type and payload; the key IDs in the envelope
// are not trusted (the x509 backend puts the signer's certificate there:
// anyone can make one). Unlike Keylime, ccmr also requires the payload
// type Keylime writes. A policy that is not an envelope is refused
// ("Runtime policy is not signed!" in Keylime): a key given must judge.
func ParseSignedRuntimePolicy(data []byte, key *ecdsa.PublicKey) (*RuntimePolicy, error) {
	if !isDSSEEnvelope(data) {
		return nil, fmt.Errorf("%w: runtime policy is not signed (not a DSSE envelope), but a signing key is given", mr.ErrMalformed)
	}
	var env dsseEnvelope
	if err := strictJSONValue(data, &env, "signed runtime policy (DSSE envelope)"); err != nil {
		return nil, err
	}
	if env.PayloadType != KeylimePayloadType {
		return nil, fmt.Errorf("%w: signed runtime policy: payload type %q, want %q", mr.ErrMalformed, env.PayloadType, KeylimePayloadType)
	}
	payload, err := keylimeB64Dec(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: signed runtime policy: payload: %v", mr.ErrMalformed, err)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("%w: signed runtime policy: the envelope holds no signature", mr.ErrMalformed)
	}
	digest := sha256.Sum256(dssePAE(env.PayloadType, payload))
	verified := false
	for _, s := range env.Signatures {
		sig, err := keylimeB64Dec(s.Sig)
		if err != nil {
			// Keylime's Verify raises on it: the envelope fails.
			return nil, fmt.Errorf("%w: signed runtime policy: a signature is not base64: %v", mr.ErrMalformed, err)
		}
		if ecdsa.VerifyASN1(key, digest[:], sig) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, fmt.Errorf("%w: signed runtime policy: no signature of the envelope verifies with the given key (DSSE, ECDSA-SHA256)", mr.ErrMalformed)
	}
	if isDSSEEnvelope(payload) {
		return nil, fmt.Errorf("%w: signed runtime policy: the payload is itself an envelope", mr.ErrMalformed)
	}
	rp, err := ParseRuntimePolicy(payload)
	if err != nil {
		return nil, fmt.Errorf("signed runtime policy payload: %w", err)
	}
	return rp, nil
}
