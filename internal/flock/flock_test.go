package flock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Two descriptions of one file exclude each other; a waiter gives up when
// its context ends and gets the lock once it is free.
func TestExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	a, b := open(t, p), open(t, p)
	ctx := context.Background()
	if err := Lock(ctx, a, Exclusive); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	c, _ := os.OpenFile(p, os.O_RDWR, 0)
	if err := Lock(short, c, Exclusive); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second exclusive lock while held: %v, want the deadline", err)
	}
	got := make(chan error, 1)
	go func() { got <- Lock(ctx, b, Exclusive) }()
	select {
	case err := <-got:
		t.Fatalf("lock granted while held: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := Unlock(a); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("lock after release: %v", err)
	}
}

// Shared holders admit each other and exclude an exclusive one.
func TestShared(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	a, b, c := open(t, p), open(t, p), open(t, p)
	ctx := context.Background()
	if err := Lock(ctx, a, Shared); err != nil {
		t.Fatal(err)
	}
	if err := Lock(ctx, b, Shared); err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := Lock(short, c, Exclusive); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exclusive lock beside shared ones: %v, want the deadline", err)
	}
}

// A context that has already ended takes no lock that is held elsewhere.
func TestCanceled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	a, b := open(t, p), open(t, p)
	if err := Lock(context.Background(), a, Exclusive); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Lock(ctx, b, Exclusive); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
