// io/files.h: how every program here reads its input files and replaces its output files.
//
// Reading: an input must be a regular file (a symbolic link to one is fine) no larger than a limit the
// caller states. The type is checked on the open descriptor (the open does not wait on a fifo) and the
// size before a byte is read, so a directory, a device that never ends (/dev/zero), a fifo or an
// oversized file is refused at once with a message naming the file, what it is and the limit.
//
// Writing: an existing file at an output path is replaced only when it is a regular file (not a link)
// of the caller's own kind (a rattn checkpoint, a .npy file, ...), and never when it is one of the run's
// inputs. Temporary files are created with O_CREAT | O_EXCL | O_NOFOLLOW: never through an existing
// link or over an existing file; a stale temporary is removed first only when it is a regular file of
// the same kind (or empty: a write killed before its first byte), otherwise the write is refused.
//
// Errors: FileRefused is bad input (the file named on the command line is wrong: exit status 2 in the
// programs); FileFailed is the environment (permission denied, an I/O error, a full disk: status 1).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace io {

struct FileRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct FileFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr uint64_t kMiB = uint64_t(1) << 20;

// "a directory", "a character device", "a fifo", ... for the file type bits of st_mode.
std::string file_type_name(mode_t mode);
// "1.5 MiB (1572864 bytes)": a limit as messages print it.
std::string bytes_text(uint64_t n);

// An input file opened for reading: a regular file, checked on the descriptor. Closes on destruction.
class InputFile {
 public:
  // what names the file in messages, e.g. "--text notes.txt" or "checkpoint 'runs/a.ckpt'".
  // Throws FileRefused (missing, not a regular file, larger than max_bytes) or FileFailed.
  InputFile(const std::string& path, uint64_t max_bytes, const std::string& what, const std::string& limit_of);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  // Up to n bytes from the current position (fewer at the end of the file).
  std::string read(uint64_t n);

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string what_;
};

// The whole file, refused (before reading) when it is not a regular file or is larger than max_bytes.
// limit_of says what the limit is for, e.g. "a text file" ("... larger than the 256 MiB allowed for a
// text file").
std::string read_bounded(const std::string& path, uint64_t max_bytes, const std::string& what,
                         const std::string& limit_of);

// The first up to n bytes of an existing regular file that is not a link ("" if it cannot be read).
std::string file_head(const std::string& path, size_t n);

// True when a and b name the same existing file (same device and inode; links followed).
bool same_file(const std::string& a, const std::string& b);

// The kind of output a program writes, to recognise a file it may replace.
struct OutputKind {
  std::string name;                                // "a rattn checkpoint", "a .npy file"
  std::function<bool(const std::string&)> is_own;  // given the file's first 64 bytes (fewer if shorter)
};

// An input of the run that an output must never replace: (how the command line names it, its path).
using NamedInput = std::pair<std::string, std::string>;

// Check that `path` may be written by the output flag `flag`: absent, or a regular file (not a link)
// that kind.is_own recognises and that is none of `inputs`. Otherwise throws FileRefused, one line:
//   "--ckpt: runs/x.ckpt exists and is not a rattn checkpoint; choose another path or remove it".
void check_output(const std::string& path, const OutputKind& kind, const std::string& flag,
                  const std::vector<NamedInput>& inputs = {});

// Check that a stale temporary file at `path` (left by a killed writer) may be removed: absent, empty, or
// a regular file (not a link) that kind.is_own recognises. Otherwise throws FileRefused naming `flag`.
void check_stale_temporary(const std::string& path, const OutputKind& kind, const std::string& flag);

// Create `path` for writing, exclusively (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0644) and return the
// descriptor. A file already there is removed first when it is a regular file that kind.is_own
// recognises or an empty one (a stale temporary of an earlier, killed run); anything else there
// (a link, a folder, a device, a file of another kind) throws FileRefused naming `flag`.
int create_exclusive(const std::string& path, const OutputKind& kind, const std::string& flag);

// Write every byte to fd (retrying short writes); false on error (errno set).
bool write_all(int fd, const void* data, size_t n);

// fsync the folder that holds path (makes a rename durable); errors are ignored.
void sync_parent_dir(const std::string& path);

}  // namespace io
