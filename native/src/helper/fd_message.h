// The console socket's one message: a byte and room for one fd
// (SCM_RIGHTS). The join helper sends it (join.cc), the addon receives it
// (console.cc); one layout for both sides.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

struct FdMessage {
  char byte = 'P';
  struct iovec iov;
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;

  FdMessage() {
    memset(cbuf, 0, sizeof cbuf);
    memset(&msg, 0, sizeof msg);
    iov.iov_base = &byte;
    iov.iov_len = 1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
  }
  // msg points into this object: never copied.
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};
