// Command ocimage writes one single-layer OCI image as a tar of an OCI image layout, the form
// `ctr images import` (and `nerdctl load`, `skopeo copy oci-archive:`) takes.
//
// The image is a pure function of its inputs: layer entries are sorted, owned by root and
// stamped with the -created time, gzip headers carry no name or time, and every JSON
// document is written in a fixed field order. The same binaries therefore give the same
// image digest, which is printed on stdout.
//
//	ocimage -o OUT.tar -ref registry.k8s.io/kube-scheduler:v1.34.2 -created 2025-11-11T19:00:37Z \
//	  -base -add /usr/local/bin/kube-scheduler=bin/kube-scheduler \
//	  -entrypoint /usr/local/bin/kube-scheduler
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	defaultPath   = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	out, ref, created, user, workdir string
	base                             bool
	adds, entrypoint, cmd, env       list
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", "", "the archive to write (replaced atomically)")
	flag.StringVar(&o.ref, "ref", "", "full image name, registry/path:tag")
	flag.StringVar(&o.created, "created", "1970-01-01T00:00:00Z", "creation time of the image and of every file in it (RFC 3339)")
	flag.StringVar(&o.user, "user", "", "user[:group] the image runs as")
	flag.StringVar(&o.workdir, "workdir", "", "working directory")
	flag.BoolVar(&o.base, "base", false, "add a minimal root: /etc/passwd, /etc/group (root, nobody), /tmp")
	flag.Var(&o.adds, "add", "DEST=SRC: put file SRC at absolute path DEST, keeping its permission bits (repeatable)")
	flag.Var(&o.entrypoint, "entrypoint", "one entrypoint word (repeatable, in order)")
	flag.Var(&o.cmd, "cmd", "one cmd word (repeatable, in order)")
	flag.Var(&o.env, "env", "KEY=VALUE (repeatable); PATH defaults to one with /usr/local/bin first")
	flag.Parse()
	digest, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocimage: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(digest)
}

// file is one regular file or directory of the layer.
type file struct {
	name string // without the leading slash
	mode int64
	dir  bool
	data []byte // inline content, or
	src  string // a file to copy
	size int64
}

func build(o options) (string, error) {
	if o.out == "" || o.ref == "" {
		return "", errors.New("-o and -ref are required")
	}
	tag, err := tagOf(o.ref)
	if err != nil {
		return "", err
	}
	created, err := time.Parse(time.RFC3339, o.created)
	if err != nil {
		return "", fmt.Errorf("-created: %w", err)
	}
	created = created.UTC().Truncate(time.Second)
	files, err := contents(o)
	if err != nil {
		return "", err
	}

	// The layer goes to a temporary file while both its digests are computed in one pass.
	dir := filepath.Dir(o.out)
	layerFile, err := os.CreateTemp(dir, ".layer-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(layerFile.Name())
	defer layerFile.Close()
	compressed := sha256.New()
	uncompressed := sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(layerFile, compressed), gzip.DefaultCompression)
	if err != nil {
		return "", err
	}
	if err := writeLayer(io.MultiWriter(zw, uncompressed), files, created); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	layerSize, err := layerFile.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", err
	}

	env := []string{}
	hasPath := false
	for _, e := range o.env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
		env = append(env, e)
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	cfg := imageConfig{
		Created:      created.Format(time.RFC3339),
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: runConfig{
			User: o.user, Env: env, Entrypoint: o.entrypoint, Cmd: o.cmd, WorkingDir: o.workdir,
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: []string{sum(uncompressed)}},
		History: []history{{Created: created.Format(time.RFC3339), CreatedBy: "kubeha ocimage " + strings.Join(adds(files), " ")}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	cfgDesc := descriptor{MediaType: mediaConfig, Digest: digestOf(cfgJSON), Size: int64(len(cfgJSON))}
	layerDesc := descriptor{MediaType: mediaLayer, Digest: sum(compressed), Size: layerSize}
	man, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: mediaManifest, Config: cfgDesc, Layers: []descriptor{layerDesc}})
	if err != nil {
		return "", err
	}
	manDesc := descriptor{
		MediaType: mediaManifest, Digest: digestOf(man), Size: int64(len(man)),
		Platform: &platform{Architecture: runtime.GOARCH, OS: "linux"},
		// containerd names the image after the first; the second is the OCI layout's own tag.
		Annotations: map[string]string{
			"io.containerd.image.name":          o.ref,
			"org.opencontainers.image.ref.name": tag,
		},
	}
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []descriptor{manDesc}})
	if err != nil {
		return "", err
	}

	outer := []file{
		{name: "blobs", dir: true, mode: 0o755},
		{name: "blobs/sha256", dir: true, mode: 0o755},
		{name: "blobs/sha256/" + hexOf(cfgDesc.Digest), data: cfgJSON, mode: 0o644},
		{name: "blobs/sha256/" + hexOf(manDesc.Digest), data: man, mode: 0o644},
		{name: "blobs/sha256/" + hexOf(layerDesc.Digest), src: layerFile.Name(), size: layerSize, mode: 0o644},
		{name: "index.json", data: idx, mode: 0o644},
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`), mode: 0o644},
	}
	sort.Slice(outer, func(i, j int) bool { return outer[i].name < outer[j].name })
	tmp, err := os.CreateTemp(dir, ".ocimage-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeTar(tmp, outer, created); err != nil {
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), o.out); err != nil {
		return "", err
	}
	return manDesc.Digest, nil
}

// tagOf returns the tag of name:tag, refusing digests and untagged names.
func tagOf(ref string) (string, error) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") || strings.Contains(ref, "@") || i == len(ref)-1 {
		return "", fmt.Errorf("-ref %q: want registry/path:tag", ref)
	}
	return ref[i+1:], nil
}

// contents is every entry of the layer, parents included, sorted by path.
func contents(o options) ([]file, error) {
	byName := map[string]file{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			n := strings.TrimPrefix(d, "/")
			if _, ok := byName[n]; !ok {
				byName[n] = file{name: n, dir: true, mode: 0o755}
			}
		}
	}
	put := func(f file) error {
		if _, dup := byName[f.name]; dup {
			return fmt.Errorf("%s is added twice", f.name)
		}
		addDirs("/" + f.name)
		byName[f.name] = f
		return nil
	}
	if o.base {
		for _, f := range []file{
			{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
			{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\n")},
			{name: "tmp", dir: true, mode: 0o1777},
		} {
			if err := put(f); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range o.adds {
		dest, src, ok := strings.Cut(a, "=")
		if !ok || !path.IsAbs(dest) || path.Clean(dest) != dest || dest == "/" || src == "" {
			return nil, fmt.Errorf("-add %q: want /absolute/dest=source", a)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", src)
		}
		if err := put(file{name: dest[1:], src: src, size: st.Size(), mode: int64(st.Mode().Perm())}); err != nil {
			return nil, err
		}
	}
	if len(byName) == 0 {
		return nil, errors.New("nothing to put in the image (-add, -base)")
	}
	files := make([]file, 0, len(byName))
	for _, f := range byName {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

func adds(files []file) []string {
	var out []string
	for _, f := range files {
		if f.src != "" {
			out = append(out, "/"+f.name)
		}
	}
	return out
}

func writeLayer(w io.Writer, files []file, mtime time.Time) error {
	return writeTar(w, files, mtime)
}

// writeTar writes files in the given order, root-owned, every time field set to mtime.
func writeTar(w io.Writer, files []file, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		case f.src != "":
			h.Typeflag, h.Size = tar.TypeReg, f.size
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if f.dir {
			continue
		}
		if f.src == "" {
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(tw, f.src, f.size); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyFile copies exactly size bytes: a source that changed size since it was listed fails.
func copyFile(w io.Writer, src string, size int64) error {
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(w, io.LimitReader(r, size+1))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s changed size while being read", src)
	}
	return nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	Created      string    `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       runConfig `json:"config"`
	RootFS       rootFS    `json:"rootfs"`
	History      []history `json:"history"`
}

type runConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

func sum(h hash.Hash) string     { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }
func digestOf(b []byte) string   { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }
