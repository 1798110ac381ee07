package ima_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
)

// Replay a binary IMA list, streamed entry by entry, to the PCR values it
// extends.
func ExampleReplay() {
	list := imatest.Binary([]imatest.Spec{imatest.NG(1), imatest.NG(2), imatest.NG(3)}, binary.LittleEndian)
	rd := ima.NewBinaryReader(bytes.NewReader(list), ima.Options{File: "list"})
	rep, err := ima.Replay(context.Background(), rd, ima.ReplayOptions{File: "list"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rep.Events, "entries")
	for _, v := range rep.Registers {
		fmt.Println(v.Register.Name, v.Digest.Alg)
	}
	// Output:
	// 3 entries
	// pcr10 sha1
	// pcr10 sha256
}
