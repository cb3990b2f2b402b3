/*
 * What config.c shares with config_value.c, and nothing else includes: how a setting's value is
 * spelled (numbers, booleans, times, and the names of modes, TLS versions and facilities) and
 * the checks of string settings the settings table points to.
 */
#ifndef PGTIDE_CONFIG_INT_H
#define PGTIDE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtide/config.h"

#define CONFIG_USEC 1000000

enum config_value_result {
	CONFIG_VALUE_OK,
	CONFIG_VALUE_INVALID, /* why says what is wrong */
	CONFIG_VALUE_OOM,
};

static inline bool config_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static inline bool config_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Each fills *out and returns OK, or fills why (for the caller's message) and leaves *out. */
enum config_value_result config_parse_int(const char *value, int base, int64_t min, int64_t max,
                                          int *out, char *why, size_t why_len);
enum config_value_result config_parse_pool_mode(const char *value, enum pool_mode *out, char *why,
                                                size_t why_len);
enum config_value_result config_parse_auth_type(const char *value, enum auth_type *out, char *why,
                                                size_t why_len);
/* 0/1, on/off, true/false, yes/no, in any case. */
bool config_parse_bool(const char *value, bool *out);
/* Seconds, possibly fractional, to microseconds, exactly. */
bool config_parse_time(const char *value, int64_t *out);

/* Checks of string settings: false with why filled in rejects the value. */
bool config_check_error_kind_field(const char *value, char *why, size_t why_len);
bool config_check_log_level(const char *value, char *why, size_t why_len);
bool config_check_pin_mode(const char *value, char *why, size_t why_len);
bool config_check_metrics_listen(const char *value, char *why, size_t why_len);
bool config_check_sslmode(const char *value, char *why, size_t why_len);
bool config_check_tls_protocols(const char *value, char *why, size_t why_len);
bool config_check_dheparams(const char *value, char *why, size_t why_len);
bool config_check_syslog_facility(const char *value, char *why, size_t why_len);

#endif
