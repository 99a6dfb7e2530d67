package cdc

import (
	"encoding/binary"
	"testing"
)

// TestFirstColumnInt: the stream skips its own entries coming back through the slot by reading
// the seq from the insert's bytes; anything it does not read exactly as a text integer in the
// first column must say so (and is then decoded whole), never give a wrong number.
func TestFirstColumnInt(t *testing.T) {
	tuple := func(cols uint16, kind byte, text string, declared int) []byte {
		b := []byte{'N', 0, 0, kind}
		binary.BigEndian.PutUint16(b[1:3], cols)
		if kind == 't' {
			b = binary.BigEndian.AppendUint32(b, uint32(declared))
			b = append(b, text...)
		}
		return append(b, 'n') // the next column
	}
	for _, tc := range []struct {
		name string
		data []byte
		want int64
		ok   bool
	}{
		{"text seq", tuple(23, 't', "12345", 5), 12345, true},
		{"negative", tuple(23, 't', "-1", 2), -1, true},
		{"null", tuple(23, 'n', "", 0), 0, false},
		{"unchanged toast", tuple(23, 'u', "", 0), 0, false},
		{"binary", tuple(23, 'b', "", 0), 0, false},
		{"no columns", tuple(0, 't', "1", 1), 0, false},
		{"not a number", tuple(23, 't', "12a", 3), 0, false},
		{"length past the end", tuple(23, 't', "12", 9), 0, false},
		{"too long for an int64", tuple(23, 't', "123456789012345678901", 21), 0, false},
		{"truncated header", []byte{'N', 0}, 0, false},
		{"not a new tuple", append([]byte{'K'}, tuple(23, 't', "1", 1)[1:]...), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := firstColumnInt(tc.data)
			if ok != tc.ok || got != tc.want {
				t.Errorf("firstColumnInt = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
