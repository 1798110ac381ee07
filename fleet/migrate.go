package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// migrations are the schema's versions, in order: migration i (from 0)
// takes the database from version i to i+1. A migration is never changed
// once released; a new one is appended. {BLOB} and {SERIAL} are the
// dialect's types.
var migrations = []string{
	// 1: machines, verdicts, nonces.
	`CREATE TABLE machines (
		id TEXT PRIMARY KEY,
		grp TEXT NOT NULL,
		platform TEXT NOT NULL,
		key_pem TEXT NOT NULL,
		state {BLOB},
		version BIGINT NOT NULL,
		updated TIMESTAMP NOT NULL
	);
	CREATE TABLE verdicts (
		seq {SERIAL},
		machine TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
		bundle_sha256 TEXT NOT NULL,
		trusted BOOLEAN NOT NULL,
		line TEXT NOT NULL,
		at TIMESTAMP NOT NULL,
		advanced BOOLEAN NOT NULL,
		from_version BIGINT NOT NULL,
		report {BLOB} NOT NULL,
		token TEXT NOT NULL
	);
	CREATE UNIQUE INDEX verdicts_bundle ON verdicts (machine, bundle_sha256);
	CREATE TABLE nonces (
		nonce {BLOB} PRIMARY KEY,
		expires TIMESTAMP NOT NULL,
		used TIMESTAMP
	);`,
	// 2: at most one advance from each version of a machine: a second
	// would be a double advance, refused by the database itself.
	`CREATE UNIQUE INDEX verdicts_advance ON verdicts (machine, from_version) WHERE advanced;
	CREATE INDEX nonces_expires ON nonces (expires);`,
	// 3: TDX and SNP machines pin their hardware (identity) and carry
	// their trust material (trust, fleet.Trust JSON).
	`ALTER TABLE machines ADD COLUMN identity TEXT NOT NULL DEFAULT '';
	ALTER TABLE machines ADD COLUMN trust {BLOB};`,
	// 4: enrolment counts the machine's enrolments that changed how it is
	// judged (pin, group, platform, trust), and each verdict keeps the one
	// it was judged under, and the digest of the policy it was judged
	// with: a verdict of an earlier enrolment or policy is never answered
	// again as the machine's (a replay).
	`ALTER TABLE machines ADD COLUMN enrolment BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE verdicts ADD COLUMN enrolment BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE verdicts ADD COLUMN policy TEXT NOT NULL DEFAULT '';`,
}

// migrate brings the schema to version to (1..len(migrations)), each step
// in its own transaction with the version row; a database newer than this
// program is refused.
func (s *sqlStore) migrate(ctx context.Context, to int) error {
	if _, err := s.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("fleet schema: %w", err)
	}
	for {
		done, err := s.step(ctx, to)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// step applies the next migration under a lock, so that replicas starting
// at once apply each exactly once.
func (s *sqlStore) step(ctx context.Context, to int) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if s.d.name == "postgres" {
		if _, err := tx.ExecContext(ctx, "LOCK TABLE schema_version IN EXCLUSIVE MODE"); err != nil {
			return false, err
		}
	}
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	if cur > len(migrations) {
		return false, fmt.Errorf("fleet schema: the database is at version %d, this ccmr knows %d: upgrade ccmr", cur, len(migrations))
	}
	if cur >= to {
		return true, nil
	}
	ddl := strings.NewReplacer("{BLOB}", s.d.blob, "{SERIAL}", s.serial()).Replace(migrations[cur])
	for _, stmt := range strings.Split(ddl, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("fleet schema: migration %d: %w", cur+1, err)
		}
	}
	if cur == 0 {
		_, err = tx.ExecContext(ctx, "INSERT INTO schema_version (version) VALUES (1)")
	} else {
		_, err = tx.ExecContext(ctx, s.q("UPDATE schema_version SET version = ?"), cur+1)
	}
	if err != nil {
		return false, err
	}
	return false, tx.Commit()
}

func (s *sqlStore) serial() string {
	if s.d.name == "postgres" {
		return "BIGSERIAL PRIMARY KEY"
	}
	return "INTEGER PRIMARY KEY AUTOINCREMENT"
}

func schemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	err := tx.QueryRowContext(ctx, "SELECT version FROM schema_version").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (s *sqlStore) SchemaVersion(ctx context.Context) (int, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.d.name == "postgres"})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	return schemaVersion(ctx, tx)
}
