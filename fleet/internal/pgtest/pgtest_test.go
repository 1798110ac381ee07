package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The server started answers a query.
func TestStart(t *testing.T) {
	u := Start(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT 1+1").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT 1+1 = %d, %v", n, err)
	}
}
