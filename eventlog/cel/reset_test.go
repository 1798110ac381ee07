package cel

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

// A CEL-TLV record on PCR 17 replays from all ones (the D-RTM PCRs' reset
// value), one on PCR 14 from zeros.
func TestTLVReplayDRTMResetValue(t *testing.T) {
	tlv := func(typ uint8, v []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{typ}, uint32(len(v))), v...)
	}
	d := mr.SHA256.Sum([]byte("event"))
	for _, pcr := range []uint32{14, 17} {
		var in []byte
		in = append(in, tlv(TLVRecNum, []byte{0})...)
		in = append(in, tlv(TLVPCR, []byte{byte(pcr)})...)
		in = append(in, tlv(TLVDigests, tlv(uint8(mr.SHA256), d.Bytes))...)
		in = append(in, tlv(7, []byte("x"))...)
		res, err := ReplayTLV(NewTLVReader(bytes.NewReader(in), "t"), TLVReplayOptions{Alg: mr.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		name := DefaultTLVName(TLVPCR, pcr)
		want := mr.NewExtender(mr.ResetValue(name, mr.SHA256))
		want.Extend(d.Bytes)
		if len(res.Registers) != 1 || res.Registers[0].Register.Name != name || !res.Registers[0].Digest.Equal(want.Value()) {
			t.Fatalf("%s: %v, want %v", name, res.Registers, want.Value())
		}
	}
}
