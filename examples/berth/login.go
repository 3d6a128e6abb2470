package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth"
)

// dockerHubKey is the key docker's config.json gives Docker Hub's
// credentials.
const dockerHubKey = "https://index.docker.io/v1/"

// loginCommand is docker login: it checks the credentials with the
// registry (berth.Login) and stores them as docker does, in the auths of
// $DOCKER_CONFIG/config.json or ~/.docker/config.json, where berth's pulls
// and pushes find them. A credential store the file names (credsStore) is
// not used: berth writes the file's own auths.
func loginCommand(fs *flagSet) runFunc {
	var user, password string
	var passwordStdin bool
	fs.String(&user, "u", "username", "string", "", "Username")
	fs.String(&password, "p", "password", "string", "", "Password")
	fs.Bool(&passwordStdin, "", "password-stdin", "Take the password from stdin")
	return func(ctx context.Context, c *cli, args []string) error {
		registry, key := registryKey(args)
		in := bufio.NewReader(c.stdin)
		switch {
		case password != "" && passwordStdin:
			return errors.New("--password and --password-stdin are mutually exclusive")
		case passwordStdin && user == "":
			return errors.New("Must provide --username with --password-stdin")
		case password != "":
			fmt.Fprintln(c.stderr, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		case passwordStdin:
			b, err := io.ReadAll(in)
			if err != nil {
				return err
			}
			password = strings.TrimRight(string(b), "\r\n")
		}
		if user == "" {
			fmt.Fprint(c.stdout, "Username: ")
			user = readLine(in)
		}
		if password == "" && !passwordStdin {
			fmt.Fprint(c.stdout, "Password: ")
			password = readLine(in)
		}
		if user == "" || password == "" {
			return errors.New("Error: Cannot perform an interactive login from a non TTY device")
		}
		if err := berth.Login(ctx, registry, berth.WithAuth(user, password)); err != nil {
			return err
		}
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
		if err := updateAuths(func(auths map[string]json.RawMessage) bool {
			auths[key], _ = json.Marshal(map[string]string{"auth": auth})
			return true
		}); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "Login Succeeded")
		return nil
	}
}

// logoutCommand is docker logout: it removes the registry's credentials
// from config.json's auths.
func logoutCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		_, key := registryKey(args)
		found := false
		err := updateAuths(func(auths map[string]json.RawMessage) bool {
			_, found = auths[key]
			delete(auths, key)
			return found
		})
		if err != nil {
			return err
		}
		if !found {
			fmt.Fprintf(c.stdout, "Not logged in to %s\n", key)
			return nil
		}
		fmt.Fprintf(c.stdout, "Removing login credentials for %s\n", key)
		return nil
	}
}

// registryKey is the registry a login or logout names (args[0], or Docker
// Hub) and its key in config.json's auths, as docker writes it.
func registryKey(args []string) (registry, key string) {
	if len(args) == 0 {
		return "", dockerHubKey
	}
	registry = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(args[0], "https://"), "http://"), "/")
	switch registry {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "index.docker.io/v1":
		return "", dockerHubKey
	}
	return registry, registry
}

func readLine(r *bufio.Reader) string {
	line, _ := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

// dockerConfigPath is docker's client configuration file.
func dockerConfigPath() (string, error) {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// updateAuths applies change to the auths of docker's config.json, keeping
// the rest of the file as it is, and writes it back (mode 0600, through a
// temporary file) when change reports a change.
func updateAuths(change func(map[string]json.RawMessage) bool) error {
	path, err := dockerConfigPath()
	if err != nil {
		return err
	}
	doc := map[string]json.RawMessage{}
	auths := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if raw, ok := doc["auths"]; ok {
			if err := json.Unmarshal(raw, &auths); err != nil {
				return fmt.Errorf("%s: auths: %w", path, err)
			}
		}
	}
	if !change(auths) {
		return nil
	}
	if doc["auths"], err = json.Marshal(auths); err != nil {
		return err
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config.json-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(out, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path) // CreateTemp made it 0600
}
