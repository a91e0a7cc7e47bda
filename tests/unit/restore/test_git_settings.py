"""Git URL and environment parsing: every problem named at once, no secret in any URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from restore.backends.git.settings import GitSettings, check_branch, parse_size
from restore.errors import ConfigError


def settings(url: str, **environ: str) -> GitSettings:
    return GitSettings.from_url(urlsplit(url), environ)


def problems(url: str, **environ: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        settings(url, **environ)
    return {p.key: p.message for p in caught.value.problems}


class TestUrl:
    @pytest.mark.parametrize(
        ("url", "remote", "transport"),
        [
            ("git+ssh://git@example.com/org/repo.git", "ssh://git@example.com/org/repo.git", "ssh"),
            ("git+ssh://git@example.com:2222/org/repo.git", "ssh://git@example.com:2222/org/repo.git", "ssh"),
            ("git+https://example.com/org/repo.git", "https://example.com/org/repo.git", "https"),
            ("git+http://127.0.0.1:8080/repo.git", "http://127.0.0.1:8080/repo.git", "http"),
            ("git+file:///srv/git/repo.git", "file:///srv/git/repo.git", "file"),
            ("git+git://127.0.0.1:9418/repo.git", "git://127.0.0.1:9418/repo.git", "git"),
        ],
    )
    def test_remote_is_the_url_without_prefix_and_fragment(self, url, remote, transport):
        parsed = settings(url + "#branch=backups")
        assert (parsed.remote, parsed.transport, parsed.branch) == (remote, transport, "backups")
        assert parsed.display == url + "#branch=backups"

    def test_defaults(self):
        parsed = settings("git+file:///srv/repo.git")
        assert (parsed.branch, parsed.path, parsed.prune) == ("main", "", "off")
        assert (parsed.author_name, parsed.author_email) == ("caretaker", "caretaker@localhost")
        assert parsed.state_dir.name == "caretaker-git"

    def test_path_is_normalised_and_names_the_cache(self):
        one = settings("git+file:///srv/repo.git#branch=b&path=/pods/web/")
        two = settings("git+file:///srv/repo.git#branch=b&path=pods/db")
        assert one.path == "pods/web"
        assert one.cache_key != two.cache_key
        assert one.cache_key == settings("git+file:///srv/repo.git#branch=b&path=pods/web").cache_key

    def test_password_in_url_is_refused_and_never_shown(self):
        found = problems("git+https://user:hunter2@example.com/repo.git")
        assert "CARETAKER_GIT_TOKEN_FILE" in found["repository"]
        with pytest.raises(ConfigError) as caught:
            settings("git+https://user:hunter2@example.com/repo.git")
        assert "hunter2" not in str(caught.value)
        assert "git+https://***@example.com/repo.git" in str(caught.value)

    def test_user_name_in_https_url_is_refused_as_a_likely_token(self):
        found = problems("git+https://ghp_token123@example.com/repo.git")
        assert "CARETAKER_GIT_USERNAME" in found["repository"]
        assert "ghp_token123" not in found["repository"]
        assert settings("git+ssh://git@example.com/repo.git").display == "git+ssh://git@example.com/repo.git"

    @pytest.mark.parametrize(
        ("url", "key"),
        [
            ("git+ssh://git@github.com:org/repo.git", "repository"),  # scp style
            ("git+file://host/srv/repo.git", "repository"),
            ("git+https:///repo.git", "repository"),
            ("git+https://example.com/", "repository"),
            ("git+file:///r.git#branch=a..b", "repository#branch"),
            ("git+file:///r.git#branch=", "repository#branch"),
            ("git+file:///r.git#path=a/../b", "repository#path"),
            ("git+file:///r.git#path=a/.git/b", "repository#path"),
            ("git+file:///r.git#brnach=x", "repository#brnach"),
        ],
    )
    def test_bad_urls_name_the_part(self, url, key):
        assert key in problems(url)


class TestEnvironment:
    def test_every_problem_is_reported_together(self, tmp_path):
        found = problems(
            "git+ssh://git@example.com/repo.git",
            CARETAKER_GIT_SSH_KEY_FILE=str(tmp_path / "missing"),
            CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS="maybe",
            CARETAKER_GIT_AUTHOR="no email here",
            CARETAKER_GIT_MESSAGE="{host} {secret}",
            CARETAKER_GIT_PRUNE="always",
            CARETAKER_GIT_LARGE_FILE="big",
        )
        assert set(found) == {
            "CARETAKER_GIT_SSH_KEY_FILE",
            "CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS",
            "CARETAKER_GIT_AUTHOR",
            "CARETAKER_GIT_MESSAGE",
            "CARETAKER_GIT_PRUNE",
            "CARETAKER_GIT_LARGE_FILE",
        }
        assert "secret" in found["CARETAKER_GIT_MESSAGE"]

    def test_values_are_read(self, tmp_path):
        key = tmp_path / "key"
        key.write_text("k")
        user = tmp_path / "user"
        user.write_text("robot\n")
        token = tmp_path / "token"
        token.write_text("t")
        parsed = settings(
            "git+https://example.com/repo.git",
            CARETAKER_GIT_SSH_KEY_FILE=str(key),
            CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS="true",
            CARETAKER_GIT_USERNAME_FILE=str(user),
            CARETAKER_GIT_TOKEN_FILE=str(token),
            CARETAKER_GIT_AUTHOR="Backup Bot <bot@example.com>",
            CARETAKER_GIT_MESSAGE="{host}: {files} files",
            CARETAKER_GIT_PRUNE="squash",
            CARETAKER_GIT_LARGE_FILE="10M",
            CARETAKER_GIT_STATE_DIR=str(tmp_path / "state"),
        )
        assert parsed.ssh_key_file == key
        assert parsed.accept_new_host_keys
        assert parsed.username == "robot"
        assert parsed.secret_file == token
        assert (parsed.author_name, parsed.author_email) == ("Backup Bot", "bot@example.com")
        assert (parsed.message, parsed.prune) == ("{host}: {files} files", "squash")
        assert parsed.large_file_bytes == 10 * 1024 * 1024
        assert parsed.state_dir == Path(tmp_path / "state")

    def test_token_and_password_are_exclusive(self, tmp_path):
        secret = tmp_path / "s"
        secret.write_text("x")
        found = problems(
            "git+https://example.com/r.git",
            CARETAKER_GIT_TOKEN_FILE=str(secret),
            CARETAKER_GIT_PASSWORD_FILE=str(secret),
        )
        assert "CARETAKER_GIT_TOKEN_FILE" in found


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("512k", 512 << 10),
        ("50M", 50 << 20),
        ("50MiB", 50 << 20),
        ("2g", 2 << 30),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "name", ["-x", "a b", "a..b", "a~1", "a^", "a:b", "x.lock", "a/", "/a", "@", "a@{1}"]
)
def test_bad_branch_names(name):
    assert check_branch(name) is not None


@pytest.mark.parametrize("name", ["main", "backups", "pods/web-0", "v1.2"])
def test_good_branch_names(name):
    assert check_branch(name) is None
