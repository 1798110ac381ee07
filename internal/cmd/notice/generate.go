package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// platforms are those ccmr is released or built for: a module linked on
// any of them is listed.
var platforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64"}

// module is one dependency module as go list reports it.
type module struct {
	Path, Version, Dir string
	Main               bool
	Replace            *module
}

// licenseFile names the files that hold a module's licence and notices.
var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|patents|licen[cs]e-3rd-party)(\.(txt|md))?$`)

// generate returns the NOTICE text for the main module in dir.
// reviewed are licence files that hold more than the known texts and were
// read by a person, keyed by "MODULE VERSION FILE": each is accepted as the
// licence given only while its SHA-256 is the one read, and its whole text
// goes into NOTICE (the id is not plain Apache-2.0).
var reviewed = map[string]struct{ sha256, id, why string }{
	"github.com/google/go-tpm-tools v0.4.4 LICENSE": {
		sha256: "b3e41fc1800f639af26e8d8f00d1d359f05535374d8fb95a6f49cf7a3931c819",
		id:     "Apache-2.0 (Go code; the appended IBM, Microsoft and TCG terms cover simulator/ C code, which ccmr does not link)",
		why:    "Apache-2.0 followed by the TPM simulator's licences",
	},
	"github.com/containerd/log v0.1.0 LICENSE": {
		sha256: "4bbe3b885e8cd1907ab4cf9a41e862e74e24b5422297a4f2fe524e6a30ada2b4",
		id:     "Apache-2.0",
		why:    "the Apache-2.0 text with https://www.apache.org/licenses/ in its header (the known text has http://) and the appendix filled in for The containerd Authors",
	},
}

func generate(ctx context.Context, dir string) ([]byte, error) {
	mods := map[string]module{}
	for _, pl := range platforms {
		goos, goarch, _ := strings.Cut(pl, "/")
		ms, err := listModules(ctx, dir, goos, goarch)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			mods[m.Path] = m
		}
	}
	paths := make([]string, 0, len(mods))
	for p := range mods {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var head, texts bytes.Buffer
	head.WriteString(`ccmr
Copyright 2026 The ccmr Authors

ccmr is licensed under the Apache License, Version 2.0 (the file LICENSE).

The ccmr binary links the Go standard library and the modules below (on
any of ` + strings.Join(platforms, ", ") + `).
Each is under the licence named, classified from its licence files by
internal/cmd/notice, which wrote this file. Their licence texts (but the
Apache License's, which is LICENSE) and NOTICE and PATENTS files follow.

`)
	goroot, err := goEnv(ctx, dir, "GOROOT")
	if err != nil {
		return nil, err
	}
	entries := []struct{ name, dir string }{{"Go standard library (golang.org)", goroot}}
	for _, p := range paths {
		m := mods[p]
		d := m.Dir
		if m.Replace != nil {
			d = m.Replace.Dir
		}
		entries = append(entries, struct{ name, dir string }{m.Path + " " + m.Version, d})
	}
	for _, e := range entries {
		if e.dir == "" {
			return nil, fmt.Errorf("%s: not in the module cache (run go mod download)", e.name)
		}
		files, err := os.ReadDir(e.dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		var ids []string
		for _, f := range files {
			if !f.Type().IsRegular() || !licenseFile.MatchString(f.Name()) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(e.dir, f.Name()))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.name, err)
			}
			upper := strings.ToUpper(f.Name())
			// Notices, patent grants and third-party lists (modernc.org's
			// LICENSE-3RD-PARTY.md: the licences of code it translated)
			// are carried whole.
			if strings.HasPrefix(upper, "NOTICE") || strings.HasPrefix(upper, "PATENTS") || strings.Contains(upper, "3RD-PARTY") {
				fmt.Fprintf(&texts, "\n==== %s: %s ====\n\n%s", e.name, f.Name(), ensureNewline(b))
				continue
			}
			id, err := classify(string(b))
			if r, ok := reviewed[e.name+" "+f.Name()]; ok && err != nil {
				// Read by a person: accepted only while the bytes are the
				// ones read.
				if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.sha256 {
					return nil, fmt.Errorf("%s: %s: changed since it was reviewed (%s): read it again", e.name, f.Name(), r.why)
				}
				id, err = r.id, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %s: licence not recognised: %w", e.name, f.Name(), err)
			}
			ids = append(ids, id)
			if id != "Apache-2.0" {
				fmt.Fprintf(&texts, "\n==== %s: %s (%s) ====\n\n%s", e.name, f.Name(), id, ensureNewline(b))
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s: no licence file in %s", e.name, e.dir)
		}
		fmt.Fprintf(&head, "%-56s %s\n", e.name, strings.Join(ids, " AND "))
	}
	head.Write(texts.Bytes())
	return head.Bytes(), nil
}

func ensureNewline(b []byte) []byte {
	b = bytes.TrimLeft(b, "\n")
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// listModules returns the modules (not the main one) whose packages
// cmd/ccmr links on goos/goarch.
func listModules(ctx context.Context, dir, goos, goarch string) ([]module, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=Module", "./cmd/ccmr")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list (%s/%s): %w: %s", goos, goarch, err, stderr.String())
	}
	var mods []module
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct{ Module *module }
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list (%s/%s): %w", goos, goarch, err)
		}
		if p.Module != nil && !p.Module.Main {
			mods = append(mods, *p.Module)
		}
	}
	return mods, nil
}

func goEnv(ctx context.Context, dir, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
