package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readLicense(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("licenses", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// NOTICE is what the generator writes today: a new, dropped or upgraded
// dependency makes this test fail until NOTICE is written again.
func TestNoticeUpToDate(t *testing.T) {
	got, err := generate(context.Background(), "../../..")
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../../NOTICE")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, got) {
		t.Fatalf("NOTICE is stale: run go run ./internal/cmd/notice > NOTICE")
	}
	for _, want := range []string{"Copyright 2026 The ccmr Authors", "github.com/spf13/cobra ", "golang.org/x/sys "} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("NOTICE lacks %q", want)
		}
	}
}

// The project's LICENSE is the Apache License 2.0 text, whole.
func TestLicenseIsApache(t *testing.T) {
	b, err := os.ReadFile("../../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := classify(string(b)); err != nil || id != "Apache-2.0" {
		t.Fatalf("LICENSE: %q, %v", id, err)
	}
}

func TestClassify(t *testing.T) {
	apache := readLicense(t, "apache-2.0.txt")
	mit := readLicense(t, "mit.txt")
	bsd3 := strings.Replace(readLicense(t, "bsd-3-clause.txt"), "{{*}}", "Google Inc.", 1)
	bsd3 = strings.Replace(bsd3, "{{?}}", "OWNER", 1)
	for _, c := range []struct {
		name, text, want string
	}{
		{"apache", "Apache License\n" + apache + "END OF TERMS AND CONDITIONS\n", "Apache-2.0"},
		{"mit with title", "The MIT License (MIT)\n\nCopyright (c) 2014 Someone\n\n" + mit, "MIT"},
		{"bsd-3 reflowed and quoted", "Copyright 2009 X. All rights reserved.\n> " + strings.ReplaceAll(bsd3, "\n", "\n> "), "BSD-3-Clause"},
		{"two licences", "Files a, b: MIT.\n" + mit + "\nThe rest:\n" + readLicense(t, "apache-2.0-header.txt"), "Apache-2.0 AND MIT"},
	} {
		if got, err := classify(c.text); err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	// Hostile or unknown texts are not classified, whatever else they hold.
	for _, c := range []struct{ name, text string }{
		{"empty", ""},
		{"unknown licence", "All rights reserved. Do not copy."},
		{"mit with a restriction", mit + "\nThe Software shall not be used for commercial purposes.\n"},
		{"commons clause", apache + "\"Commons Clause\" License Condition v1.0: the grant of rights does not include the right to Sell.\n"},
		{"bsd-3 with a clause in the name", strings.Replace(bsd3, "Google Inc.", "Google Inc. provided you pay a fee", 1)},
		{"mit missing a sentence", strings.Replace(mit, "The above copyright notice and this permission notice shall be included in\nall copies or substantial portions of the Software.", "", 1)},
		{"long filler", mit + strings.Repeat("word ", maxFiller+1)},
		{"gpl", "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007"},
	} {
		if got, err := classify(c.text); err == nil {
			t.Errorf("%s: classified as %q", c.name, got)
		}
	}
}

// classify reads licence files of modules nobody here wrote: whatever the
// text, it returns known licence IDs or an error, and never panics.
func FuzzClassify(f *testing.F) {
	for _, p := range parts {
		b, err := licenseFS.ReadFile("licenses/" + p.file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		id, err := classify(text)
		if err != nil {
			return
		}
		for _, one := range strings.Split(id, " AND ") {
			known := false
			for _, p := range parts {
				known = known || p.id == one
			}
			if !known {
				t.Fatalf("classified as %q", id)
			}
		}
	})
}
