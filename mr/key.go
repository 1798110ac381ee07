package mr

import "context"

// KeyHolder is a Device whose evidence is signed by a key of its own that a
// verifier pins: a TPM's attestation key, the sim device's key. TDX and SNP
// evidence chains to the vendor's roots instead, so their devices are not
// KeyHolders.
type KeyHolder interface {
	// PublicKeyPEM returns the signing key's public half as PEM
	// "PUBLIC KEY", creating the key on first use where the device does.
	PublicKeyPEM(ctx context.Context) ([]byte, error)
}
