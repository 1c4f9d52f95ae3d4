// io/files.cpp: bounded reads of regular files, guarded replacement of outputs (see io/files.h).
#include "io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace io {

namespace {

// ENOENT, ENOTDIR, ELOOP, ...: the name is wrong (bad input). EACCES, EPERM, EIO, ...: the environment.
bool environment_errno(int e) {
  return e == EACCES || e == EPERM || e == EIO || e == ENOMEM || e == EMFILE || e == ENFILE || e == ENOSPC ||
         e == EDQUOT || e == EROFS || e == EFBIG;
}

[[noreturn]] void throw_errno(const std::string& what, const char* doing, int e) {
  const std::string msg = what + ": " + doing + " (" + std::strerror(e) + ")";
  if (environment_errno(e)) throw FileFailed(msg);
  throw FileRefused(msg);
}

}  // namespace

std::string file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a fifo";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

std::string bytes_text(uint64_t n) {
  char buf[64];
  if (n >= kMiB && n % kMiB == 0) std::snprintf(buf, sizeof buf, "%llu MiB", (unsigned long long)(n / kMiB));
  else std::snprintf(buf, sizeof buf, "%llu bytes", (unsigned long long)n);
  return buf;
}

InputFile::InputFile(const std::string& path, uint64_t max_bytes, const std::string& what, const std::string& limit_of)
    : what_(what) {
  // O_NONBLOCK: opening a fifo for reading must not wait for a writer; the type is checked right after.
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd_ < 0) throw_errno(what, "cannot open", errno);
  struct stat st{};
  if (::fstat(fd_, &st) != 0) {
    const int e = errno;
    ::close(fd_);
    throw_errno(what, "cannot stat", e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw FileRefused(what + ": is " + file_type_name(st.st_mode) + ", not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ > max_bytes) {
    ::close(fd_);
    throw FileRefused(what + ": " + std::to_string(size_) + " bytes, larger than the " + bytes_text(max_bytes) +
                      " allowed for " + limit_of);
  }
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string InputFile::read(uint64_t n) {
  std::string out;
  out.resize(size_t(n));
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd_, &out[done], size_t(n) - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(what_, "read failed", errno);
    }
    if (r == 0) break;  // the file shrank since fstat: the caller sees fewer bytes
    done += size_t(r);
  }
  out.resize(done);
  return out;
}

std::string read_bounded(const std::string& path, uint64_t max_bytes, const std::string& what,
                         const std::string& limit_of) {
  InputFile f(path, max_bytes, what, limit_of);
  // The size from fstat, never more: a file that grows while it is read is cut where it was measured.
  return f.read(f.size());
}

std::string file_head(const std::string& path, size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st{};
  std::string out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::read(fd, &out[done], n - done);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += size_t(r);
    }
    out.resize(done);
  }
  ::close(fd);
  return out;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa{}, sb{};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_output(const std::string& path, const OutputKind& kind, const std::string& flag,
                  const std::vector<NamedInput>& inputs) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;  // a new file
    throw_errno(flag + ": " + path, "cannot stat", errno);
  }
  for (const auto& [name, in] : inputs)
    if (!in.empty() && same_file(path, in))
      throw FileRefused(flag + ": " + path + " is the " + name + " file of this run; choose another path");
  if (!S_ISREG(st.st_mode))
    throw FileRefused(flag + ": " + path + " exists and is " + file_type_name(st.st_mode) + ", not " + kind.name +
                      "; choose another path or remove it");
  if (!kind.is_own(file_head(path, 64)))
    throw FileRefused(flag + ": " + path + " exists and is not " + kind.name + "; choose another path or remove it");
}

void check_stale_temporary(const std::string& path, const OutputKind& kind, const std::string& flag) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw_errno(flag + ": " + path, "cannot stat", errno);
  }
  if (!S_ISREG(st.st_mode))
    throw FileRefused(flag + ": the temporary file " + path + " exists and is " + file_type_name(st.st_mode) +
                      "; remove it");
  if (st.st_size != 0 && !kind.is_own(file_head(path, 64)))
    throw FileRefused(flag + ": the temporary file " + path + " exists and is not " + kind.name + "; remove it");
}

int create_exclusive(const std::string& path, const OutputKind& kind, const std::string& flag) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    if (errno != EEXIST || attempt > 0) throw_errno(flag + ": " + path, "cannot create", errno);
    // Something is there. Only a stale temporary of our own kind (or an empty one) is removed.
    check_stale_temporary(path, kind, flag);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(flag + ": " + path, "cannot remove", errno);
  }
  throw FileFailed(flag + ": " + path + ": cannot create");
}

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(fd, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += size_t(w);
  }
  return true;
}

void sync_parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace io
