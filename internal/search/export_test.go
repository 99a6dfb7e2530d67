package search

// SetMaxDigestListings sets how many batches' digests are listed one at a time, and returns the
// function that restores it.
func SetMaxDigestListings(n int) (restore func()) {
	old := maxDigestListings
	maxDigestListings = n
	return func() { maxDigestListings = old }
}
