package osfind

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Entry ids, so that lunboot.entry= can name an entry the way the boot
// loaders do: a BLS entry's id is its file name without ".conf" (the Boot
// Loader Specification, "Type #1 Boot Loader Entry Keys"; systemd-boot's
// loader.conf `default` and bootctl use it), a GRUB menuentry's is its
// `--id` argument (GRUB manual, "menuentry"; grub-mkconfig writes
// `$menuentry_id_option 'gnulinux-…'`, which expands to --id). u-root's
// parsers keep neither, so they are read here beside them, matched to the
// entries by the name u-root gives each.

// blsIDs maps the u-root name of each BLS entry under dir ("title
// version") to its id. Files are read in the reverse name order u-root
// sorts them in, so when two files give the same name the one u-root puts
// first wins.
func blsIDs(dir string) map[string]string {
	ids := map[string]string{}
	for _, entriesDir := range []string{"loader/entries", "boot/loader/entries"} {
		files, _ := filepath.Glob(filepath.Join(dir, entriesDir, "*.conf"))
		sort.Sort(sort.Reverse(sort.StringSlice(files)))
		for _, file := range files {
			name := blsName(file)
			if _, dup := ids[name]; name != "" && !dup {
				ids[name] = strings.TrimSuffix(filepath.Base(file), ".conf")
			}
		}
	}
	return ids
}

// grubConfigs are the files u-root's grub.ParseLocalConfig tries, in its
// order (pkg/boot/grub: EFI/*/grub.cfg, then probeGrubFiles).
func grubConfigs(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "EFI", "*", "grub.cfg"))
	for _, f := range []string{"boot/grub/grub.cfg", "grub/grub.cfg", "grub2/grub.cfg", "boot/grub2/grub.cfg"} {
		files = append(files, filepath.Join(dir, f))
	}
	return files
}

// grubIDs maps each menuentry title of the first readable GRUB
// configuration under dir to its --id, for titles that have one.
func grubIDs(dir string) map[string]string {
	for _, path := range grubConfigs(dir) {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		ids := map[string]string{}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for s.Scan() {
			title, id := menuentryID(s.Text())
			if _, dup := ids[title]; title != "" && id != "" && !dup {
				ids[title] = id
			}
		}
		f.Close()
		return ids
	}
	return nil
}

// menuentryID reads `menuentry <title> [options] {` and returns the title
// and the --id (also written --id=<id>, or $menuentry_id_option <id>).
func menuentryID(line string) (title, id string) {
	w := shellWords(strings.TrimSpace(line))
	if len(w) < 2 || w[0] != "menuentry" {
		return "", ""
	}
	for i := 2; i < len(w); i++ {
		switch {
		case (w[i] == "--id" || w[i] == "$menuentry_id_option" || w[i] == "${menuentry_id_option}") && i+1 < len(w):
			return w[1], w[i+1]
		case strings.HasPrefix(w[i], "--id="):
			return w[1], strings.TrimPrefix(w[i], "--id=")
		}
	}
	return w[1], ""
}

// shellWords splits a GRUB script line into words as its lexer does for
// plain cases: blanks separate words, single quotes keep everything,
// double quotes and backslashes escape; a "{" word ends the command.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			inWord = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				cur.WriteString(line[i+1:])
				i = len(line)
				continue
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
		case c == '\\' && i+1 < len(line):
			inWord = true
			i++
			cur.WriteByte(line[i])
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
		if !inWord && len(words) > 0 && words[len(words)-1] == "{" {
			return words[:len(words)-1]
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if n := len(words); n > 0 && words[n-1] == "{" {
		words = words[:n-1]
	}
	return words
}
