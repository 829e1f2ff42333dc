// Package bytesize formats byte counts for people: the console's disk and
// transfer sizes, and the host tools' listings.
package bytesize

import "fmt"

// Format formats n with a binary (IEC) unit and one decimal: "512 B",
// "1.5 KiB", "3.0 TiB". Binary because disk capacities and block sizes are
// powers of two: a 2 TiB LUN reads "2.0 TiB", not "2.2 TB".
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	// An int64 reaches 8 EiB, so exp stays within "KMGTPE".
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// MiB formats n in MiB with two decimals, as the build tools report image
// sizes against budgets given in MiB ("6.06 MiB").
func MiB(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
