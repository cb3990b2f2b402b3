/*
 * Logging. The output streams (stderr, the log file, syslog) are process-wide by nature, so
 * their state is the one deliberate exception to "no mutable globals"; a mutex keeps lines
 * whole if a worker thread (cancel) logs while the loop does.
 */
#include "pgtide/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "pgtide/config.h"

static struct {
	pthread_mutex_t lock;
	FILE *file;
	bool use_syslog;
	int verbose;
	bool quiet;
	char ident[64]; /* openlog() keeps the pointer: the caller's string may be freed (reload) */
	int facility;   /* openlog()'s, LOG_DAEMON etc. */
} log_state = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"DEBUG", "LOG", "WARNING", "ERROR", "FATAL"};
static const int syslog_levels[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT};

/* In enum config_syslog_facility's order. */
static const int syslog_facilities[CONFIG_SYSLOG_N_FACILITIES] = {
        LOG_AUTH,   LOG_AUTHPRIV, LOG_DAEMON, LOG_USER,   LOG_LOCAL0, LOG_LOCAL1,
        LOG_LOCAL2, LOG_LOCAL3,   LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7,
};

bool log_open(const char *logfile, bool use_syslog, const char *syslog_ident,
              const char *syslog_facility, int verbose, bool quiet)
{
	int fi = config_syslog_facility(syslog_facility);
	int facility = syslog_facilities[fi >= 0 ? fi : CONFIG_SYSLOG_DAEMON];
	FILE *f = NULL;
	if (logfile && logfile[0]) {
		f = fopen(logfile, "a");
		if (!f)
			return false;
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file)
		fclose(log_state.file);
	log_state.file = f;
	const char *ident = syslog_ident && syslog_ident[0] ? syslog_ident : "pgtide";
	bool new_ident = strncmp(ident, log_state.ident, sizeof(log_state.ident) - 1) != 0;
	bool new_facility = facility != log_state.facility;
	if (use_syslog && (!log_state.use_syslog || new_ident || new_facility)) {
		if (log_state.use_syslog)
			closelog();
		snprintf(log_state.ident, sizeof(log_state.ident), "%s", ident);
		log_state.facility = facility;
		openlog(log_state.ident, LOG_PID, facility);
	} else if (!use_syslog && log_state.use_syslog) {
		closelog();
	}
	log_state.use_syslog = use_syslog;
	log_state.verbose = verbose;
	log_state.quiet = quiet;
	pthread_mutex_unlock(&log_state.lock);
	return true;
}

void log_close(void)
{
	pthread_mutex_lock(&log_state.lock);
	if (log_state.file)
		fclose(log_state.file);
	log_state.file = NULL;
	if (log_state.use_syslog)
		closelog();
	log_state.use_syslog = false;
	pthread_mutex_unlock(&log_state.lock);
}

bool log_debug_enabled(void)
{
	return log_state.verbose > 0;
}

bool log_enabled(enum log_level level)
{
	if (level == LOG_LEVEL_DEBUG && log_state.verbose <= 0)
		return false;
	/* Formatting costs more than most of a connection's life: skip it when nobody reads. */
	return !(log_state.quiet && level < LOG_LEVEL_ERROR && !log_state.file &&
	         !log_state.use_syslog);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[64];
	size_t n = strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03d UTC", (int)(tv.tv_usec / 1000));

	pthread_mutex_lock(&log_state.lock);
	bool to_stderr = !log_state.quiet || level >= LOG_LEVEL_ERROR;
	if (to_stderr)
		fprintf(stderr, "%s [%d] %s %s\n", ts, (int)getpid(), level_names[level], msg);
	if (log_state.file)
		fprintf(log_state.file, "%s [%d] %s %s\n", ts, (int)getpid(), level_names[level],
		        msg);
	if (log_state.use_syslog)
		syslog(syslog_levels[level], "%s %s", level_names[level], msg);
	pthread_mutex_unlock(&log_state.lock);
}
