/* Leveled logging to stderr, a log file and syslog. Lines about a connection carry its prefix. */
#ifndef PGTIDE_LOG_H
#define PGTIDE_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0, /* verbose >= 1 */
	LOG_LEVEL_LOG,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_FATAL,
};

/* Opens (or reopens, on SIGHUP for log rotation) the log file; "" or NULL means none.
 * syslog_facility is a syslog_facility name (NULL: daemon). */
bool log_open(const char *logfile, bool use_syslog, const char *syslog_ident,
              const char *syslog_facility, int verbose, bool quiet);
void log_close(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_LOG, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_fatal(...) log_msg(LOG_LEVEL_FATAL, __VA_ARGS__)

/* True if DEBUG lines are written (to skip building expensive messages). */
bool log_debug_enabled(void);
/* True if a line at this level would be written anywhere (to skip formatting it). */
bool log_enabled(enum log_level level);

#endif
