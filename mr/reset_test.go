package mr

import (
	"bytes"
	"testing"
)

func TestResetValue(t *testing.T) {
	ones := bytes.Repeat([]byte{0xFF}, 48)
	zero := make([]byte, 48)
	for _, c := range []struct {
		name string
		want []byte
	}{
		{"pcr0", zero}, {"pcr14", zero}, {"pcr16", zero}, {"pcr17", ones}, {"pcr22", ones}, {"pcr23", zero},
		{"rtmr3", zero}, {"mr_ima", zero}, {"pcr017", zero}, {"pcr24", zero}, {"pcr", zero}, {"pcr1x", zero},
	} {
		if got := ResetValue(c.name, SHA384); got.Alg != SHA384 || !bytes.Equal(got.Bytes, c.want) {
			t.Errorf("ResetValue(%s) = %v", c.name, got)
		}
	}
}

func TestGuestResettable(t *testing.T) {
	for name, want := range map[string]bool{"pcr16": true, "pcr23": true, "pcr14": false, "pcr17": false, "pcr016": false, "rtmr3": false, "pcr123": false} {
		if GuestResettable(name) != want {
			t.Errorf("GuestResettable(%s) != %v", name, want)
		}
	}
}

func TestPCRNumber(t *testing.T) {
	for name, want := range map[string]int{"pcr0": 0, "pcr9": 9, "pcr10": 10, "pcr23": 23, "pcr24": -1, "pcr00": -1, "pcr-1": -1, "PCR1": -1, "pcr": -1, "pcr１": -1} {
		n, ok := PCRNumber(name)
		if (want >= 0) != ok || (ok && n != want) {
			t.Errorf("PCRNumber(%q) = %d, %v; want %d", name, n, ok, want)
		}
	}
}
