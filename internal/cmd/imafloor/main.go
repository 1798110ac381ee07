// Command imafloor is the floor a parallel IMA replay is measured against:
// it reads a little-endian binary list and folds one bank chain per core,
// and does nothing else (no checks of the listed hashes, no errors worth the
// name, no signatures, ima-ng style templates only). Each bank's goroutine
// walks the list on its own: the sha1 bank folds the listed hashes, every
// other bank hashes the template data and folds that. It prints PCR 10 of
// each bank, so a benchmark can check it computed what ccmr does.
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"flag"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
)

func main() {
	banks := flag.String("banks", "sha1,sha256", "banks to fold, one goroutine each (sha1, sha256, sha384, sha512)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: imafloor [-banks sha1,sha256] LIST")
		os.Exit(2)
	}
	list, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "imafloor:", err)
		os.Exit(2)
	}
	var names []string
	for _, n := range strings.Split(*banks, ",") {
		if newHash(n) == nil {
			fmt.Fprintln(os.Stderr, "imafloor: unknown bank", n)
			os.Exit(2)
		}
		names = append(names, n)
	}
	out := make([][]byte, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fold(list, n)
		}()
	}
	wg.Wait()
	for i, n := range names {
		fmt.Printf("pcr10 %s:%x\n", n, out[i])
	}
}

// fold folds bank name of every PCR 10 entry of list.
func fold(list []byte, name string) []byte {
	h, ext := newHash(name), newHash(name)
	pcr := make([]byte, h.Size())
	ones := make([]byte, h.Size())
	for i := range ones {
		ones[i] = 0xff
	}
	var zero [20]byte
	var d []byte
	for len(list) >= 32 {
		listed := list[4:24]
		nl := int(binary.LittleEndian.Uint32(list[24:]))
		dl := int(binary.LittleEndian.Uint32(list[28+nl:]))
		data := list[32+nl : 32+nl+dl]
		isPCR10 := binary.LittleEndian.Uint32(list) == 10
		list = list[32+nl+dl:]
		if !isPCR10 {
			continue
		}
		switch {
		case string(listed) == string(zero[:]):
			d = ones
		case name == "sha1":
			d = listed
		default:
			h.Reset()
			h.Write(data)
			d = h.Sum(d[:0])
		}
		ext.Reset()
		ext.Write(pcr)
		ext.Write(d)
		pcr = ext.Sum(pcr[:0])
	}
	return pcr
}

func newHash(name string) hash.Hash {
	switch name {
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}
