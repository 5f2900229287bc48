package sni

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// LoadLetsEncrypt loads every certificate of a certbot configuration folder
// (usually /etc/letsencrypt): for each folder dir/live/<name>/, the chain in
// fullchain.pem and the key in privkey.pem. Files in dir/live (certbot's
// README) are skipped. Each certificate is served for the DNS names it
// holds, not for the folder name, which is only certbot's label. The
// entries are sorted by folder name; their Source is the fullchain.pem path.
func LoadLetsEncrypt(dir string) ([]Entry, error) {
	entries, _, err := loadLetsEncrypt(dir)
	return entries, err
}

// loadLetsEncrypt also returns the files and folders it read, for Watch:
// the live folder changes when certbot adds a name, the files when it renews.
func loadLetsEncrypt(dir string) ([]Entry, []string, error) {
	live := filepath.Join(dir, "live")
	files := []string{live}
	des, err := os.ReadDir(live)
	if err != nil {
		return nil, files, fmt.Errorf("sni: let's encrypt folder: %w", err)
	}
	sort.Slice(des, func(i, j int) bool { return des[i].Name() < des[j].Name() })
	var entries []Entry
	for _, de := range des {
		sub := filepath.Join(live, de.Name())
		if st, err := os.Stat(sub); err != nil || !st.IsDir() {
			continue // README, or a dangling link certbot will repair
		}
		certFile := filepath.Join(sub, "fullchain.pem")
		keyFile := filepath.Join(sub, "privkey.pem")
		files = append(files, sub, certFile, keyFile)
		cert, err := LoadPair(certFile, keyFile)
		if err != nil {
			return nil, files, err
		}
		entries = append(entries, Entry{Certificate: cert, Source: certFile})
	}
	return entries, files, nil
}
