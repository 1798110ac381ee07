package main

import (
	"embed"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The known licence texts, with {{*}} for a name (up to 15 words) and {{?}}
// for a short variant (up to 3 words) that licences of one kind differ in.
//
//go:embed licenses/*.txt
var licenseFS embed.FS

// part is one known piece of licence text and the licence it is.
type part struct {
	id   string // SPDX identifier
	file string
	re   *regexp.Regexp
}

// parts are matched in this order; every piece of a licence file must be
// one of them or short filler (titles, copyright lines).
var parts = []part{
	{id: "Apache-2.0", file: "apache-2.0.txt"},
	{id: "Apache-2.0", file: "apache-2.0-end.txt"},
	{id: "Apache-2.0", file: "apache-2.0-appendix.txt"},
	{id: "Apache-2.0", file: "apache-2.0-header.txt"},
	{id: "BSD-3-Clause", file: "bsd-3-clause.txt"},
	{id: "BSD-2-Clause", file: "bsd-2-clause.txt"},
	{id: "MIT", file: "mit.txt"},
	{id: "ISC", file: "isc.txt"},
}

func init() {
	for i := range parts {
		b, err := licenseFS.ReadFile("licenses/" + parts[i].file)
		if err != nil {
			panic(err)
		}
		parts[i].re = templateRegexp(string(b))
	}
}

// normalize reduces text to lower-case words separated by single spaces,
// each followed by a space: line breaks, punctuation, Markdown quoting and
// list markers do not change what a licence says.
func normalize(s string) string {
	// Numbered clauses ("1. Redistributions …") say what bulleted ones do.
	s = clauseNumber.ReplaceAllString(s, "$1")
	var b strings.Builder
	word := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			word = true
		} else if word {
			b.WriteByte(' ')
			word = false
		}
	}
	if word {
		b.WriteByte(' ')
	}
	return b.String()
}

func templateRegexp(t string) *regexp.Regexp {
	var re strings.Builder
	for _, w := range strings.Fields(normalizeTemplate(t)) {
		switch w {
		case "wildcardname":
			re.WriteString(`((?:[a-z0-9]+ ){1,15}?)`)
		case "wildcardshort":
			re.WriteString(`((?:[a-z0-9]+ ){0,3}?)`)
		default:
			re.WriteString(regexp.QuoteMeta(w) + " ")
		}
	}
	return regexp.MustCompile(re.String())
}

// clauseNumber is a clause's number at the start of a line.
var clauseNumber = regexp.MustCompile(`(?m)^(\s*)\d{1,2}\.\s`)

func normalizeTemplate(t string) string {
	t = strings.ReplaceAll(t, "{{*}}", " wildcardname ")
	t = strings.ReplaceAll(t, "{{?}}", " wildcardshort ")
	return normalize(t)
}

// legal are words that change what a licence permits. A wildcard or the
// filler around the known texts holding one is not a name or a title: the
// file says something the known texts do not, and is not classified.
var legal = map[string]bool{
	"shall": true, "must": true, "may": true, "not": true, "except": true, "unless": true,
	"provided": true, "condition": true, "conditions": true, "permission": true,
	"permitted": true, "grant": true, "granted": true, "prohibited": true, "prohibit": true,
	"restriction": true, "restrictions": true, "restricted": true, "commercial": true,
	"sell": true, "liable": true, "liability": true, "warranty": true, "warranties": true,
	"terminate": true, "termination": true, "patent": true, "patents": true, "clause": true,
	"fee": true, "royalty": true, "only": true, "noncommercial": true, "without": true,
}

// maxFiller is how many words outside the known texts a licence file may
// hold: titles and copyright lines, and a sentence saying which files are
// under which licence.
const maxFiller = 120

// classify returns the SPDX expression of one licence file's text: the
// licences of its known parts joined by AND (a file holding two licences
// applies both, each to its own files). It fails when the text holds no
// known licence, or something beyond known texts and short filler.
func classify(text string) (string, error) {
	s := normalize(text)
	ids := map[string]bool{}
	for _, p := range parts {
		for {
			m := p.re.FindStringSubmatchIndex(s)
			if m == nil {
				break
			}
			for g := 2; g+1 < len(m); g += 2 {
				if m[g] >= 0 {
					if w := legalWord(s[m[g]:m[g+1]]); w != "" {
						return "", fmt.Errorf("%s text with %q where a name belongs", p.id, w)
					}
				}
			}
			ids[p.id] = true
			s = s[:m[0]] + "| " + s[m[1]:]
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("no known licence text")
	}
	filler := strings.Fields(strings.ReplaceAll(s, "|", ""))
	if len(filler) > maxFiller {
		return "", fmt.Errorf("%d words besides the known licence texts (at most %d)", len(filler), maxFiller)
	}
	if w := legalWord(strings.Join(filler, " ")); w != "" {
		return "", fmt.Errorf("%q besides the known licence texts", w)
	}
	var list []string
	for id := range ids {
		list = append(list, id)
	}
	sort.Strings(list)
	return strings.Join(list, " AND "), nil
}

func legalWord(s string) string {
	for _, w := range strings.Fields(s) {
		if legal[w] {
			return w
		}
	}
	return ""
}
