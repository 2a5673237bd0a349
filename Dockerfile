# Web image: the Django app (gunicorn, static files through WhiteNoise), the bookkeeping Celery
# worker and Celery beat. No torch here: model hosting is Dockerfile.worker.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    COPE_DATA_DIR=/data
RUN groupadd --system --gid 1000 cope \
 && useradd --system --uid 1000 --gid cope --home-dir /app --no-create-home --shell /usr/sbin/nologin cope \
 && mkdir -p /app /data \
 && chown cope:cope /data
WORKDIR /app
# Dependencies first, in their own layer: it changes only with pyproject.toml. The project
# itself runs from /app (the source copied below), so its own package is removed again.
COPY pyproject.toml README.md ./
RUN pip install . && pip uninstall -y cope-studio
COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0 \
 && chmod +x bin/docker-init
USER cope
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["gunicorn", "cope_studio.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
