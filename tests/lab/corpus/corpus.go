// Command corpus turns real Go module sources into a GOPROXY file tree, for the
// real-download benchmark (cargo xtask bench --workload download): every
// directory under -src with a go.mod becomes one module at one version, served
// as <escaped path>/@v/{list,vX.info,vX.mod,vX.zip} by labd's "files" behaviour.
//
// The sources are Debian's golang-*-dev packages (/usr/share/gocode/src): real
// modules, real file counts and sizes. Each module's go.mod is cut down to its
// module and go lines, the same text in .mod and inside the zip, so that the
// module graph is exactly the list of modules the client requires, whatever
// versions Debian happened to package. The version is v1.0.0, or vN.0.0 for a
// module path with a major version suffix (/vN, gopkg.in's .vN).
//
// Zips are made by golang.org/x/mod/zip (what cmd/go itself checks them
// against); a module it refuses is skipped and counted. Writes, besides the tree:
// modules.txt ("path version files bytes" per module) and go.mod, the client's
// main module requiring every module. Built in GOPATH mode against Debian's
// golang-golang-x-mod-dev, like labd.
package main

import (
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

const info = `{"Version":%q,"Time":"2024-01-01T00:00:00Z"}`

// version is the one version a module is served at: v1.0.0, or the major
// version its path asks for.
func version(path string) string {
	_, major, _ := module.SplitPathVersion(path)
	major = strings.TrimLeft(major, "/.")
	switch major {
	case "", "v1":
		return "v1.0.0"
	case "v0":
		return "v0.1.0"
	}
	return major + ".0.0"
}

// goLine is the module's own go directive, or 1.16 (what cmd/go assumes for a
// go.mod without one) when it has none.
func goLine(f *modfile.File) string {
	if f.Go != nil && semver.IsValid("v"+f.Go.Version) {
		return f.Go.Version
	}
	return "1.16"
}

// rewriteZip copies a module zip, replacing its go.mod with gomod.
func rewriteZip(data []byte, prefix string, gomod []byte) ([]byte, int, error) {
	r, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, 0, err
	}
	var out bytes.Buffer
	w := zip.NewWriter(&out)
	for _, f := range r.File {
		if f.Name == prefix+"go.mod" {
			fw, err := w.Create(f.Name)
			if err != nil {
				return nil, 0, err
			}
			if _, err := fw.Write(gomod); err != nil {
				return nil, 0, err
			}
			continue
		}
		if err := w.Copy(f); err != nil {
			return nil, 0, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), len(r.File), nil
}

func write(path string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		log.Fatal(err)
	}
}

func main() {
	src := flag.String("src", "/usr/share/gocode/src", "where the module sources are")
	out := flag.String("out", "corpus", "the GOPROXY tree to write (must not exist)")
	appModule := flag.String("app", "bench.lab.test/app", "the main module's path")
	flag.Parse()
	log.SetFlags(0)
	if _, err := os.Stat(*out); err == nil {
		log.Fatalf("%s exists", *out)
	}

	// Module roots, in a stable order; the first directory wins a duplicate path.
	var roots []string
	err := filepath.WalkDir(*src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) && path != *src {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" && d.Type().IsRegular() {
			roots = append(roots, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	sort.Strings(roots)

	seen := map[string]bool{}
	var list, skipped []string
	maxGo := "1.16"
	var files, bytesTotal int
	for _, dir := range roots {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			log.Fatal(err)
		}
		f, err := modfile.ParseLax(filepath.Join(dir, "go.mod"), data, nil)
		if err != nil || f.Module == nil {
			skipped = append(skipped, fmt.Sprintf("%s: go.mod: %v", dir, err))
			continue
		}
		path := f.Module.Mod.Path
		if seen[path] {
			continue
		}
		seen[path] = true
		v := version(path)
		gov := goLine(f)
		gomod := []byte(fmt.Sprintf("module %s\n\ngo %s\n", path, gov))
		var raw bytes.Buffer
		m := module.Version{Path: path, Version: v}
		if err := modzip.CreateFromDir(&raw, m, dir); err != nil {
			skipped = append(skipped, fmt.Sprintf("%s@%s: %v", path, v, err))
			continue
		}
		zipped, n, err := rewriteZip(raw.Bytes(), path+"@"+v+"/", gomod)
		if err != nil {
			log.Fatalf("%s: %v", path, err)
		}
		escPath, err := module.EscapePath(path)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		base := filepath.Join(*out, filepath.FromSlash(escPath), "@v")
		write(filepath.Join(base, "list"), []byte(v+"\n"))
		write(filepath.Join(base, v+".info"), []byte(fmt.Sprintf(info, v)))
		write(filepath.Join(base, v+".mod"), gomod)
		write(filepath.Join(base, v+".zip"), zipped)
		if semver.Compare("v"+gov, "v"+maxGo) > 0 {
			maxGo = gov
		}
		files += n
		bytesTotal += len(zipped)
		list = append(list, fmt.Sprintf("%s %s %d %d", path, v, n, len(zipped)))
	}

	// The main module: every module, at its version, and a go line no older
	// than any of theirs (else -mod=mod would rewrite it during the build).
	var app strings.Builder
	fmt.Fprintf(&app, "module %s\n\ngo %s\n\nrequire (\n", *appModule, maxGo)
	for _, line := range list {
		fields := strings.Fields(line)
		fmt.Fprintf(&app, "\t%s %s\n", fields[0], fields[1])
	}
	app.WriteString(")\n")
	write(filepath.Join(*out, "go.mod"), []byte(app.String()))
	for _, s := range skipped {
		log.Printf("skipped %s", s)
	}
	write(filepath.Join(*out, "skipped.txt"), []byte(strings.Join(skipped, "\n")+"\n"))
	write(filepath.Join(*out, "modules.txt"), []byte(strings.Join(list, "\n")+"\n"))
	log.Printf("corpus: %d modules, %d files, %.1f MiB of zips; %d skipped", len(list), files, float64(bytesTotal)/(1<<20), len(skipped))
}
