package serve

import (
	"errors"
	"testing"
)

func TestParsePolicyRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":              ``,
		"null":               `null`,
		"other format":       `{"format":"ccmr-serve-policy/v2","rules":[]}`,
		"unknown member":     `{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"extend":["mr_a"],"admin":true}]}`,
		"repeated member":    `{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"uids":[0]}]}`,
		"case-folded member": `{"format":"ccmr-serve-policy/v1","rules":[{"UIDs":[1]}]}`,
		"trailing data":      `{"format":"ccmr-serve-policy/v1","rules":[]} x`,
		"rule for nobody":    `{"format":"ccmr-serve-policy/v1","rules":[{"extend":["mr_*"]}]}`,
		"everyone and uids":  `{"format":"ccmr-serve-policy/v1","rules":[{"everyone":true,"uids":[5]}]}`,
		"bad cgroup regexp":  `{"format":"ccmr-serve-policy/v1","rules":[{"cgroups":["("]}]}`,
		"bad extend pattern": `{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"extend":["mr_["]}]}`,
		"empty pattern":      `{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1],"extend":[""]}]}`,
		"negative uid":       `{"format":"ccmr-serve-policy/v1","rules":[{"uids":[-1]}]}`,
	} {
		if _, err := ParsePolicy([]byte(doc)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: ParsePolicy = %v, want ErrPolicy", name, err)
		}
	}
}

func TestPolicyAllows(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[
		{"uids":[1000],"extend":["mr_app.alice","mr_app.alice.*"],"read":true},
		{"gids":[2000],"quote":true},
		{"uids":[3000],"cut":true},
		{"cgroups":["/system\\.slice/docker-([0-9a-f]{12})[0-9a-f]*\\.scope"],"extend":["mr_ctr.$1"]},
		{"cgroups":["/kubepods/(.*)"],"extend":["mr_pod.$1"]},
		{"everyone":true,"extend":["mr_public"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	alice := Peer{UID: 1000, GID: 1000}
	ctr := Peer{UID: 1234, GID: 1234, Cgroup: "/system.slice/docker-0123456789abcdef0123.scope", CgroupKnown: true}
	for _, tc := range []struct {
		name string
		p    *Policy
		peer Peer
		op   Op
		reg  string
		want bool
	}{
		{"root, default policy", nil, Peer{Admin: true}, OpExtend, "rtmr2", true},
		{"root in a container, default policy", nil, Peer{}, OpExtend, "rtmr2", false},
		{"user, default policy", nil, alice, OpRead, "", false},
		{"alice her register", p, alice, OpExtend, "mr_app.alice", true},
		{"alice her sub-register", p, alice, OpExtend, "mr_app.alice.db", true},
		{"alice another's", p, alice, OpExtend, "mr_app.bob", false},
		{"alice a real register", p, alice, OpExtend, "rtmr2", false},
		{"alice reads", p, alice, OpRead, "", true},
		{"alice quotes", p, alice, OpQuote, "", false},
		{"group 2000 quotes", p, Peer{UID: 5, GID: 2000}, OpQuote, "", true},
		{"container its register", p, ctr, OpExtend, "mr_ctr.0123456789ab", true},
		{"container another's", p, ctr, OpExtend, "mr_ctr.ffffffffffff", false},
		{"container, cgroup unknown", p, Peer{UID: 1234, Cgroup: ctr.Cgroup}, OpExtend, "mr_ctr.0123456789ab", false},
		{"cgroup must match whole", p, Peer{UID: 1, Cgroup: "/evil" + ctr.Cgroup, CgroupKnown: true}, OpExtend, "mr_ctr.0123456789ab", false},
		// A captured group that would widen the pattern grants nothing.
		{"captured metacharacter", p, Peer{UID: 1, Cgroup: "/kubepods/*", CgroupKnown: true}, OpExtend, "mr_pod.x", false},
		{"captured slash", p, Peer{UID: 1, Cgroup: "/kubepods/a/b", CgroupKnown: true}, OpExtend, "mr_pod.a/b", false},
		{"captured name", p, Peer{UID: 1, Cgroup: "/kubepods/pod1", CgroupKnown: true}, OpExtend, "mr_pod.pod1", true},
		{"everyone", p, Peer{UID: 77}, OpExtend, "mr_public", true},
		{"everyone, nothing else", p, Peer{UID: 77}, OpRead, "", false},
		{"root cuts, default policy", nil, Peer{Admin: true}, OpCut, "", true},
		{"user cuts, default policy", nil, alice, OpCut, "", false},
		{"alice cuts", p, alice, OpCut, "", false},
		{"quoter cuts", p, Peer{UID: 5, GID: 2000}, OpCut, "", false},
		{"uid 3000 cuts", p, Peer{UID: 3000, GID: 3000}, OpCut, "", true},
	} {
		if got := tc.p.Allows(tc.peer, tc.op, tc.reg); got != tc.want {
			t.Errorf("%s: Allows(%v, %v, %q) = %v, want %v", tc.name, tc.peer, tc.op, tc.reg, got, tc.want)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1000],"cgroups":["/a/(.*)"],"extend":["mr_x.$1"],"read":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		peer := Peer{UID: 1000, GID: 1000, Cgroup: "/a/b", CgroupKnown: true}
		for _, op := range []Op{OpExtend, OpRead, OpQuote, OpCut} {
			p.Allows(peer, op, "mr_x.b")
		}
	})
}
