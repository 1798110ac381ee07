package serve_test

import (
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/serve"
)

// A rule's "aa" patterns grant record domains of the agent's API and
// nothing else: not virtual registers, and "extend" patterns grant no
// domain. A malformed pattern is a policy error.
func TestPolicyAADomains(t *testing.T) {
	p, err := serve.ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[
		{"uids":[1000],"aa":["github.com/*"]},
		{"uids":[1001],"extend":["*"]},
		{"cgroups":["/ctr-([a-z]+)\\.scope"],"aa":["example.org/$1"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := serve.Peer{UID: 1000}, serve.Peer{UID: 1001}
	ctr := serve.Peer{UID: 2000, Cgroup: "/ctr-abc.scope", CgroupKnown: true}
	for _, tc := range []struct {
		peer serve.Peer
		op   serve.Op
		name string
		want bool
	}{
		{alice, serve.OpAA, "github.com/confidential-containers", true},
		{alice, serve.OpAA, "github.com/a/b", false}, // '*' does not match '/'
		{alice, serve.OpAA, "example.org/x", false},
		{alice, serve.OpExtend, "github.com/confidential-containers", false},
		{bob, serve.OpAA, "anything", false},
		{bob, serve.OpExtend, "mr_app.x", true},
		{ctr, serve.OpAA, "example.org/abc", true},
		{ctr, serve.OpAA, "example.org/xyz", false},
		{serve.Peer{UID: 0, Admin: true}, serve.OpAA, "anything", true},
		{serve.Peer{UID: 0}, serve.OpAA, "github.com/x", false},
	} {
		if got := p.Allows(tc.peer, tc.op, tc.name); got != tc.want {
			t.Errorf("%s %s %s: %v, want %v", tc.peer, tc.op, tc.name, got, tc.want)
		}
	}
	if _, err := serve.ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"aa":["["]}]}`)); !errors.Is(err, serve.ErrPolicy) {
		t.Errorf("malformed aa pattern: %v, want ErrPolicy", err)
	}
	if _, err := serve.ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"aa":[""]}]}`)); !errors.Is(err, serve.ErrPolicy) {
		t.Errorf("empty aa pattern: %v, want ErrPolicy", err)
	}
}
