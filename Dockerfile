# Web image: Django + the bookkeeping Celery worker. No torch here (see Dockerfile.worker).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_STATIC_ROOT=/app/staticfiles
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cope_studio cope_studio
COPY policies policies
COPY labeling labeling
COPY worker worker
RUN pip install --no-cache-dir .
COPY . .
RUN DJANGO_SECRET_KEY=build python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "cope_studio.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
