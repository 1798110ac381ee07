package snpverify

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// FuzzVerify: mutated reports and certificates never panic, and every
// failure is either malformed input or a *CheckError.
func FuzzVerify(f *testing.F) {
	if s := corpus.Seeds(f, "go-sev-guest/attestation.bin", "go-sev-guest/vcek.testcer"); len(s) == 2 {
		f.Add(s[0], s[1])
	}
	if s := corpus.Seeds(f, "trustee/snp/test-vlek-report.bin", "trustee/snp/test-vlek.der"); len(s) == 2 {
		f.Add(s[0], s[1])
	}
	f.Add(make([]byte, 1184), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, rep, cert []byte) {
		r, err := Verify(rep, [][]byte{cert}, Options{At: milanAt})
		var ce *CheckError
		switch {
		case err == nil:
			if r == nil || len(r.Registers) != 3 || r.ProductLine == "" {
				t.Fatal("trusted without registers or product line")
			}
		case errors.As(err, &ce), errors.Is(err, mr.ErrMalformed):
		default:
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// kdsArcs are the KDS extension arcs FuzzKDSExtensions draws from, and
// one outside them.
var kdsArcs = [][]int{{1}, {2}, {3, 1}, {3, 2}, {3, 3}, {3, 4}, {3, 5}, {3, 6}, {3, 7}, {3, 8}, {3, 9}, {4}, {5}, {3, 10}}

// FuzzKDSExtensions: the KDS extension reader, given any values under
// the arcs (input: repeated arc index, length, value), never panics; what
// it accepts has SPLs in 0-255, and the TCB and the line it names are
// read without panic.
func FuzzKDSExtensions(f *testing.F) {
	for _, rel := range []string{"go-sev-guest/vcek.testcer", "trustee/snp/test-vlek.der"} {
		s := corpus.Seeds(f, rel)
		if len(s) != 1 {
			continue
		}
		c, err := x509.ParseCertificate(s[0])
		if err != nil {
			f.Fatal(err)
		}
		var in []byte
		for _, x := range c.Extensions {
			for i, a := range kdsArcs {
				if x.Id.Equal(append(append(asn1.ObjectIdentifier{}, kdsArc...), a...)) && len(x.Value) < 256 {
					in = append(append(in, byte(i), byte(len(x.Value))), x.Value...)
				}
			}
		}
		f.Add(in)
	}
	f.Add([]byte{1, 7, 0x16, 5, 'T', 'u', 'r', 'i', 'n', 11, 8, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, in []byte) {
		var exts []pkix.Extension
		for len(in) >= 2 {
			a, n := kdsArcs[int(in[0])%len(kdsArcs)], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			exts = append(exts, pkix.Extension{Id: append(append(asn1.ObjectIdentifier{}, kdsArc...), a...), Value: in[:n]})
			in = in[n:]
		}
		e, err := parseKDSExtensions(&x509.Certificate{Extensions: exts})
		if err != nil {
			return
		}
		for _, v := range e.SPL {
			if v < 0 || v > 255 {
				t.Fatalf("SPL %d accepted", v)
			}
		}
		line, _ := lineFromProductName(e.ProductName)
		for _, l := range append([]string{line}, ProductLines...) {
			_, _ = e.tcb(l)
			_ = hwidMatches(l, e.HWID, make([]byte, 64))
		}
	})
}
