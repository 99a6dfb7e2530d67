package verify_test

import (
	"os"
	"testing"

	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }
