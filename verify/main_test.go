package verify_test

import (
	"os"
	"testing"

	"github.com/pgtrail/pgtrail/testcontainers"
)

func TestMain(m *testing.M) { os.Exit(testcontainers.RunMain(m)) }
