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
