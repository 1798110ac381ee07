package fleet

import (
	"context"
	"testing"
	"time"
)

// A database at schema version 1 with data is migrated to the current
// version keeping its rows; migration 2's rule (one advance per version)
// then holds in the database itself; migration 3 leaves the sim and TPM
// machines without a hardware identity; a database newer than the program
// is refused; opening again changes nothing.
func TestMigrations(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, err := Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			s := st.(*sqlStore)
			// Back to version 1: drop what migrations 2, 3 and 4 made.
			for _, q := range []string{"DROP INDEX verdicts_advance", "DROP INDEX nonces_expires",
				"ALTER TABLE machines DROP COLUMN identity", "ALTER TABLE machines DROP COLUMN trust", "ALTER TABLE machines DROP COLUMN enrolment", "ALTER TABLE verdicts DROP COLUMN enrolment", "ALTER TABLE verdicts DROP COLUMN policy", "UPDATE schema_version SET version = 1"} {
				if _, err := s.db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if v, _ := st.SchemaVersion(ctx); v != 1 {
				t.Fatalf("version %d, want 1", v)
			}
			// Enrolled as version 1 did (Enroll writes version 3's columns).
			if _, err := s.db.ExecContext(ctx, s.q("INSERT INTO machines (id, grp, platform, key_pem, state, version, updated) VALUES (?, ?, ?, ?, NULL, 0, ?)"),
				"m", "g", "sim", "k", time.Now().UTC()); err != nil {
				t.Fatal(err)
			}
			ins := s.q("INSERT INTO verdicts (" + verdictCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
			if _, err := s.db.ExecContext(ctx, ins, "m", "b1", true, "TRUSTED", time.Now().UTC(), true, 0, []byte("{}"), ""); err != nil {
				t.Fatal(err)
			}
			st.Close()
			st = openStore(t, url)
			if v, err := st.SchemaVersion(ctx); err != nil || v != len(migrations) {
				t.Fatalf("version %d (%v), want %d", v, err, len(migrations))
			}
			if h, err := st.History(ctx, "m"); err != nil || len(h) != 1 || h[0].Bundle != "b1" {
				t.Fatalf("history after the migration: %+v %v", h, err)
			}
			if m, _, err := st.Machine(ctx, "m"); err != nil || m.KeyPEM != "k" || m.Identity != "" || m.Trust != nil || m.Platform != "sim" {
				t.Fatalf("machine after the migration: %+v %v", m, err)
			}
			s = st.(*sqlStore)
			if _, err := s.db.ExecContext(ctx, ins, "m", "b2", true, "TRUSTED", time.Now().UTC(), true, 0, []byte("{}"), ""); err == nil {
				t.Error("a second advance from version 0 was recorded")
			}
			if _, err := s.db.ExecContext(ctx, ins, "m", "b3", false, "NOT TRUSTED", time.Now().UTC(), false, 0, []byte("{}"), ""); err != nil {
				t.Errorf("an untrusted verdict at version 0: %v", err)
			}
			// Opening again is a no-op.
			openStore(t, url)
			if _, err := s.db.ExecContext(ctx, "UPDATE schema_version SET version = 99"); err != nil {
				t.Fatal(err)
			}
			if st2, err := Open(ctx, url); err == nil {
				st2.Close()
				t.Error("a database newer than the program was opened")
			}
		})
	}
}

// Store URLs that name no store are refused.
func TestOpenRefuses(t *testing.T) {
	for _, u := range []string{"", "mysql://x", "sqlite:", "sqlite:/tmp/x.db?mode=ro", "/tmp/x.sqlite3"} {
		if st, err := Open(context.Background(), u); err == nil {
			st.Close()
			t.Errorf("%q opened", u)
		}
	}
}
