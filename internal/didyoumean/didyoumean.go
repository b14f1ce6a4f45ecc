// Package didyoumean measures how far a typed name is from the names a
// command or a policy accepts, for "did you mean" hints. It is a dozen
// lines of Levenshtein distance: not worth a dependency, shared by the
// CLI's flag hints and the policy loader's field and kind hints.
package didyoumean

// Distance is the Levenshtein distance of a and b, counted in bytes (the
// names it compares are ASCII).
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
