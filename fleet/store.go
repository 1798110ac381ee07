// Package fleet is ccmr's fleet verifier: the verifier as a service whose
// state (each machine's monitor entry, the verdict history, the nonces it
// issued) lives in a database shared by its replicas: SQLite for one host,
// PostgreSQL for several. A machine's state is advanced in one transaction
// that holds its row (SELECT … FOR UPDATE; BEGIN IMMEDIATE on SQLite) and
// checks its version, so two replicas never both advance it from the same
// version, and a crash before the commit leaves the previous state.
package fleet

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/mr"

	// Drivers of the two stores: both pure Go (CGO_ENABLED=0 builds).
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Errors the service maps to HTTP statuses.
var (
	// ErrUnknownMachine: no machine of that id is enrolled.
	ErrUnknownMachine = errors.New("unknown machine")
	// ErrNonce: the bundle's nonce was not issued, has expired or was used.
	ErrNonce = errors.New("nonce unknown, expired or already used")
	// ErrConflict: the machine's row changed under the transaction (the
	// version check failed); nothing was written.
	ErrConflict = errors.New("machine state changed concurrently")
	// ErrStaleVerdict: the bundle was judged before the machine was
	// enrolled again with another pin, group, platform or trust, or under
	// another policy than its group's now: that verdict is not answered
	// again as the machine's.
	ErrStaleVerdict = errors.New("the bundle was judged under an earlier enrolment or policy of the machine")
)

// Machine is one enrolled machine's row.
type Machine struct {
	ID    string `json:"id"`
	Group string `json:"group"`
	// Platform is "sim", "tpm", "tdx" or "snp". KeyPEM is the key pinned
	// at enrolment of a sim or TPM machine (the sim device key or the TPM
	// AK), the only key its evidence may carry; Identity the hardware a
	// TDX or SNP machine's evidence must come from (Identity: its SNP
	// CHIP_ID or TDX PPID), and Trust the trust material it is judged
	// with (Trust JSON; empty: the defaults).
	Platform string `json:"platform"`
	KeyPEM   string `json:"key_pem,omitempty"`
	Identity string `json:"identity,omitempty"`
	Trust    []byte `json:"-"`
	// State is the machine's monitor entry (verifier.MachineState JSON),
	// empty before its first trusted verdict; Version counts its advances.
	State   []byte    `json:"-"`
	Version int64     `json:"version"`
	Updated time.Time `json:"updated"`
}

// Verdict is one verification recorded in the history.
type Verdict struct {
	Machine string `json:"machine"`
	// Bundle is the SHA-256 (hex) of the bundle as received.
	Bundle  string    `json:"bundle_sha256"`
	Trusted bool      `json:"trusted"`
	Line    string    `json:"verdict"`
	At      time.Time `json:"at"`
	// Advanced says the verdict advanced the state from version From.
	Advanced bool  `json:"advanced"`
	From     int64 `json:"from_version"`
	// Report is the verify report (JSON); Token the EAR, when signed.
	Report []byte `json:"-"`
	Token  string `json:"-"`
}

// Outcome is what a verification of a bundle gives the store: the verdict
// to record and, when the state advances, the machine's new entry.
type Outcome struct {
	Trusted bool
	Line    string
	Report  []byte
	Token   string
	// State is the new entry; nil leaves the row as it is.
	State []byte
	// Policy is the digest of the policy the bundle was judged under
	// ("none" without one), kept with the verdict: a replay is answered
	// only while the machine's group has that policy.
	Policy string
}

// Submission is a bundle to judge against a machine's row.
type Submission struct {
	Machine string
	Bundle  string // SHA-256 hex of the bundle
	Nonce   []byte
	At      time.Time
	// Policy, when set, gives the digest of the policy a machine of the
	// group is judged under now: a recorded verdict of another policy is
	// not replayed (ErrStaleVerdict).
	Policy func(group string) (string, error)
}

// VerifyFunc judges a bundle from the machine's row, inside the transaction
// that holds it.
type VerifyFunc func(ctx context.Context, m *Machine) (*Outcome, error)

// Store holds the fleet's state. Both implementations share one schema.
type Store interface {
	// Enroll adds a machine, or replaces its group and key (its state is
	// then dropped: a new key is a new machine). An enrolment that changes
	// how the machine is judged (pin, group, platform, trust) ends the
	// replay of the verdicts judged before it.
	Enroll(ctx context.Context, m Machine) error
	// IssueNonce stores a nonce usable once until expires.
	IssueNonce(ctx context.Context, nonce []byte, expires time.Time) error
	// Submit judges a bundle under the machine's row lock: the nonce is
	// consumed, the verdict recorded and the state advanced in one
	// transaction. A bundle already judged for the machine gets its
	// recorded verdict back (replayed true), nothing else is done.
	Submit(ctx context.Context, s Submission, verify VerifyFunc) (v *Verdict, replayed bool, err error)
	// Machine returns a machine's row and last verdict under its current
	// enrolment (nil before any: a verdict judged under an earlier pin,
	// group, platform or trust is not the machine's last verdict).
	Machine(ctx context.Context, id string) (*Machine, *Verdict, error)
	// Machines lists the enrolled machines by id.
	Machines(ctx context.Context) ([]Machine, error)
	// History lists a machine's verdicts, oldest first.
	History(ctx context.Context, id string) ([]Verdict, error)
	// SchemaVersion is the migration the database is at.
	SchemaVersion(ctx context.Context) (int, error)
	Close() error
}

// dialect is what differs between the two databases.
type dialect struct {
	name string
	// forUpdate locks the selected row (PostgreSQL); SQLite's BEGIN
	// IMMEDIATE already holds the database's write lock.
	forUpdate string
	// dollar: placeholders are $1, $2 … instead of ?.
	dollar bool
	blob   string
}

var (
	postgres = dialect{name: "postgres", forUpdate: " FOR UPDATE", dollar: true, blob: "BYTEA"}
	sqlite   = dialect{name: "sqlite", blob: "BLOB"}
)

// sqlStore is the Store over database/sql, for either dialect.
type sqlStore struct {
	db *sql.DB
	d  dialect
}

// Open opens the store a URL names: postgres://… or postgresql://… for
// PostgreSQL, sqlite:PATH (or a path ending .db) for SQLite, and migrates
// it to the current schema.
func Open(ctx context.Context, url string) (Store, error) {
	var s *sqlStore
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(32)
		s = &sqlStore{db: db, d: postgres}
	case strings.HasPrefix(url, "sqlite:"), strings.HasSuffix(url, ".db"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" || strings.ContainsAny(path, "?#") {
			return nil, fmt.Errorf("fleet store %q: want sqlite:PATH without options", url)
		}
		// BEGIN IMMEDIATE for every transaction: the write lock is taken
		// before the row is read, so no two writers read the same version.
		// Times are written in one fixed format, always in UTC (every
		// caller converts), so that SQL compares them in time order.
		dsn := "file:" + path + "?_txlock=immediate&_time_format=sqlite&_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, err
		}
		s = &sqlStore{db: db, d: sqlite}
	default:
		return nil, fmt.Errorf("fleet store %q: want postgres://… or sqlite:PATH", url)
	}
	if err := s.migrate(ctx, len(migrations)); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// q rewrites ? placeholders for the dialect.
func (s *sqlStore) q(query string) string {
	if !s.d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *sqlStore) Close() error { return s.db.Close() }

func (s *sqlStore) Enroll(ctx context.Context, m Machine) error {
	if err := checkEnrol(m); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var key, identity, grp, platform string
	var trust []byte
	err = tx.QueryRowContext(ctx, s.q("SELECT key_pem, identity, grp, platform, trust FROM machines WHERE id = ?"+s.d.forUpdate), m.ID).Scan(&key, &identity, &grp, &platform, &trust)
	now := time.Now().UTC()
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO machines (id, grp, platform, key_pem, identity, trust, state, version, updated) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, ?)"),
			m.ID, m.Group, m.Platform, m.KeyPEM, m.Identity, m.Trust, now)
	case err == nil && key == m.KeyPEM && identity == m.Identity && grp == m.Group && platform == m.Platform && bytes.Equal(trust, m.Trust):
		// The same enrolment again: nothing changes how it is judged.
		_, err = tx.ExecContext(ctx, s.q("UPDATE machines SET updated = ? WHERE id = ?"), now, m.ID)
	case err == nil && key == m.KeyPEM && identity == m.Identity:
		// Judged differently from now on (group, trust): the state
		// stays (the verifier uses an entry of another policy only to
		// verify in full), the verdicts so far are not replayed.
		_, err = tx.ExecContext(ctx, s.q("UPDATE machines SET grp = ?, platform = ?, trust = ?, enrolment = enrolment + 1, updated = ? WHERE id = ?"), m.Group, m.Platform, m.Trust, now, m.ID)
	case err == nil:
		// Another key or hardware: the state judged under the old one is
		// not this machine's; the version goes on so no old verdict's
		// version repeats.
		_, err = tx.ExecContext(ctx, s.q("UPDATE machines SET grp = ?, platform = ?, key_pem = ?, identity = ?, trust = ?, state = NULL, version = version + 1, enrolment = enrolment + 1, updated = ? WHERE id = ?"),
			m.Group, m.Platform, m.KeyPEM, m.Identity, m.Trust, now, m.ID)
	}
	if err != nil {
		return fmt.Errorf("enrol %s: %w", m.ID, err)
	}
	return tx.Commit()
}

// checkEnrol refuses a machine that pins nothing, or the wrong thing for
// its platform.
func checkEnrol(m Machine) error {
	if m.ID == "" || m.Group == "" {
		return fmt.Errorf("enrol %q: want an id and a group", m.ID)
	}
	switch m.Platform {
	case "sim", "tpm":
		if m.KeyPEM == "" || m.Identity != "" {
			return fmt.Errorf("enrol %s: a %s machine pins a key, and no hardware identity", m.ID, m.Platform)
		}
	case "tdx", "snp":
		if m.KeyPEM != "" {
			return fmt.Errorf("enrol %s: a %s machine pins its hardware identity, not a key", m.ID, m.Platform)
		}
		// Stored as Identity writes it (prefix, lower-case hex): the
		// evidence's identity is compared with it byte for byte.
		if id, err := ParseIdentity(mr.Platform(m.Platform), m.Identity); err != nil || id != m.Identity {
			return fmt.Errorf("enrol %s: hardware identity %q is no %s identity as ParseIdentity writes it", m.ID, m.Identity, m.Platform)
		}
		if _, err := parseTrust(m.Trust); err != nil {
			return fmt.Errorf("enrol %s: %w", m.ID, err)
		}
	default:
		return fmt.Errorf("enrol %s: platform %q: want sim, tpm, tdx or snp", m.ID, m.Platform)
	}
	return nil
}

func (s *sqlStore) IssueNonce(ctx context.Context, nonce []byte, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q("INSERT INTO nonces (nonce, expires, used) VALUES (?, ?, NULL)"), nonce, expires.UTC())
	if err != nil {
		return fmt.Errorf("store nonce: %w", err)
	}
	// Expired nonces are of no use: dropped as new ones come (a day
	// late, so a refusal can still say "expired" in the logs meanwhile).
	_, err = s.db.ExecContext(ctx, s.q("DELETE FROM nonces WHERE expires < ?"), time.Now().UTC().Add(-24*time.Hour))
	return err
}

// machineCols are the columns of a machine's row scanMachine reads.
const machineCols = "grp, platform, key_pem, identity, trust, state, version, enrolment, updated"

// scanMachine reads machineCols into m (whose ID names the row) and
// returns the machine's enrolment count; no row is ErrUnknownMachine.
func scanMachine(row *sql.Row, m *Machine) (enrolment int64, err error) {
	err = row.Scan(&m.Group, &m.Platform, &m.KeyPEM, &m.Identity, &m.Trust, &m.State, &m.Version, &enrolment, &m.Updated)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: %q", ErrUnknownMachine, m.ID)
	}
	return enrolment, err
}

const verdictCols = "machine, bundle_sha256, trusted, line, at, advanced, from_version, report, token"

// scanVerdict reads verdictCols, then into extra any further columns.
func scanVerdict(sc interface{ Scan(...any) error }, extra ...any) (*Verdict, error) {
	var v Verdict
	err := sc.Scan(append([]any{&v.Machine, &v.Bundle, &v.Trusted, &v.Line, &v.At, &v.Advanced, &v.From, &v.Report, &v.Token}, extra...)...)
	if err != nil {
		return nil, err
	}
	v.At = v.At.UTC()
	return &v, nil
}

func (s *sqlStore) Submit(ctx context.Context, sub Submission, verify VerifyFunc) (*Verdict, bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	// Every return before Commit rolls back: nothing of a failed request
	// is written.
	defer tx.Rollback()
	m := Machine{ID: sub.Machine}
	enrolment, err := scanMachine(tx.QueryRowContext(ctx, s.q("SELECT "+machineCols+" FROM machines WHERE id = ?"+s.d.forUpdate), sub.Machine), &m)
	if err != nil {
		return nil, false, err
	}
	// Under the row lock: a second copy of a bundle sees the first's
	// verdict once that has committed.
	var judgedIn int64
	var judgedBy string
	v, err := scanVerdict(tx.QueryRowContext(ctx, s.q("SELECT "+verdictCols+", enrolment, policy FROM verdicts WHERE machine = ? AND bundle_sha256 = ?"), sub.Machine, sub.Bundle), &judgedIn, &judgedBy)
	if err == nil {
		if judgedIn != enrolment {
			// Judged under what the machine was enrolled with before:
			// another key or hardware, group or trust. That verdict is
			// not the machine's answer any more.
			return nil, false, fmt.Errorf("%w: machine %s: this bundle was judged under its enrolment %d, it is at %d: take a new challenge", ErrStaleVerdict, sub.Machine, judgedIn, enrolment)
		}
		if sub.Policy != nil {
			cur, err := sub.Policy(m.Group)
			if err != nil {
				return nil, false, err
			}
			if cur != judgedBy {
				return nil, false, fmt.Errorf("%w: machine %s: this bundle was judged under policy %q, its group %s has %s now: take a new challenge", ErrStaleVerdict, sub.Machine, judgedBy, m.Group, cur)
			}
		}
		return v, true, tx.Commit()
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, false, err
	}
	at := sub.At.UTC()
	res, err := tx.ExecContext(ctx, s.q("UPDATE nonces SET used = ? WHERE nonce = ? AND used IS NULL AND expires > ?"), at, sub.Nonce, at)
	if err != nil {
		return nil, false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, false, ErrNonce
	}
	out, err := verify(ctx, &m)
	if err != nil {
		return nil, false, err
	}
	v = &Verdict{Machine: sub.Machine, Bundle: sub.Bundle, Trusted: out.Trusted, Line: out.Line, At: at,
		From: m.Version, Report: out.Report, Token: out.Token}
	if out.State != nil {
		if !out.Trusted {
			return nil, false, errors.New("fleet: a state from an untrusted verdict")
		}
		res, err := tx.ExecContext(ctx, s.q("UPDATE machines SET state = ?, version = version + 1, updated = ? WHERE id = ? AND version = ?"),
			out.State, at, sub.Machine, m.Version)
		if err != nil {
			return nil, false, err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, false, ErrConflict
		}
		v.Advanced = true
	}
	_, err = tx.ExecContext(ctx, s.q("INSERT INTO verdicts ("+verdictCols+", enrolment, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		v.Machine, v.Bundle, v.Trusted, v.Line, v.At, v.Advanced, v.From, v.Report, v.Token, enrolment, out.Policy)
	if err != nil {
		return nil, false, fmt.Errorf("record verdict: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return v, false, nil
}

func (s *sqlStore) Machine(ctx context.Context, id string) (*Machine, *Verdict, error) {
	m := Machine{ID: id}
	enrolment, err := scanMachine(s.db.QueryRowContext(ctx, s.q("SELECT "+machineCols+" FROM machines WHERE id = ?"), id), &m)
	if err != nil {
		return nil, nil, err
	}
	m.Updated = m.Updated.UTC()
	v, err := scanVerdict(s.db.QueryRowContext(ctx, s.q("SELECT "+verdictCols+" FROM verdicts WHERE machine = ? AND enrolment = ? ORDER BY seq DESC LIMIT 1"), id, enrolment))
	if errors.Is(err, sql.ErrNoRows) {
		return &m, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return &m, v, nil
}

func (s *sqlStore) Machines(ctx context.Context) ([]Machine, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, grp, platform, identity, version, updated FROM machines ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Machine
	for rows.Next() {
		var m Machine
		if err := rows.Scan(&m.ID, &m.Group, &m.Platform, &m.Identity, &m.Version, &m.Updated); err != nil {
			return nil, err
		}
		m.Updated = m.Updated.UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *sqlStore) History(ctx context.Context, id string) ([]Verdict, error) {
	rows, err := s.db.QueryContext(ctx, s.q("SELECT "+verdictCols+" FROM verdicts WHERE machine = ? ORDER BY seq"), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Verdict
	for rows.Next() {
		v, err := scanVerdict(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}
